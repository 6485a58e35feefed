"""The register-tiled GEMM on packed weight panels, in Numba: the kernel of
src_cy/panel_gemm.h and the packing of src_cy/_common.pxd (docs/DESIGN.md, "The
packed panels"), on simd.py's vectors.

A panel is K rows by one vector of U columns, row-major. panel_gemm computes

    C[c + r*ldc + v*cstride + u] (+)= sum_k A[a + r*sr + k*sk] * P[p + v*pstride + k*U + u]

for r < M, v < npanels, u < U, on flat arrays (element offsets a, p, c, b): sr, sk
select A (M, K) row-major (sr = lda, sk = 1) or given as its transpose (1, lda).
Every panel writes U columns, so C is padded to whole panels. mode START_ZERO
overwrites C, START_C adds to it, START_BIAS starts each row from bias[b + ...]
(its columns as C's).

The tile is MR rows by NV panels of accumulators (MR x NV vectors in registers,
with NV panel vectors and a broadcast beside them); the one or two rows left over
take NV_FEW panels at a time, as in the Cython kernel, whose measurements chose
these sizes (panel_gemm.h).
"""
from numba import njit, types
from numba.extending import intrinsic

from .jit import JIT
from .simd import VECTOR_BYTES, broadcast, element_pointer, lanes, load, multiply_add, store, \
    zeros
from .symbols import Shared

MR = 6
NV = 4 if VECTOR_BYTES == 64 else 2
NV_FEW = 4

START_ZERO, START_C, START_BIAS = 0, 1, 2


@njit(**JIT)
def _start(C, c, bias, b, mode):
    """One accumulator's first value: 0, C's vector at c, or bias's at b."""
    if mode == START_C:
        return load(C, c)
    if mode == START_BIAS:
        return load(bias, b)
    return zeros(C)


@njit(**JIT)
def _row_start(nv, C, c, cstride, bias, b, mode):
    """A row's four accumulators: the first nv start from _start, the rest 0."""
    z = zeros(C)
    return (_start(C, c, bias, b, mode),
            _start(C, c + cstride, bias, b + cstride, mode) if nv > 1 else z,
            _start(C, c + 2 * cstride, bias, b + 2 * cstride, mode) if nv > 2 else z,
            _start(C, c + 3 * cstride, bias, b + 3 * cstride, mode) if nv > 3 else z)


@njit(**JIT)
def _row_add(a, w, acc):
    """acc + a * w over a row's four accumulators."""
    return (multiply_add(a, w[0], acc[0]), multiply_add(a, w[1], acc[1]),
            multiply_add(a, w[2], acc[2]), multiply_add(a, w[3], acc[3]))


@njit(**JIT)
def _row_add2(a, w, acc):
    """acc + a * w over the first two of a row's accumulators."""
    return multiply_add(a, w[0], acc[0]), multiply_add(a, w[1], acc[1]), acc[2], acc[3]


@njit(**JIT)
def _row_store(nv, C, c, cstride, acc):
    """A row's first nv accumulators into C."""
    store(C, c, acc[0])
    if nv > 1:
        store(C, c + cstride, acc[1])
    if nv > 2:
        store(C, c + 2 * cstride, acc[2])
    if nv > 3:
        store(C, c + 3 * cstride, acc[3])


def _make_tile(mr, width):
    """The tile of mr rows by up to `width` (2 or 4) panels, mr and width constants
    of its compiled code: the branches on them fold and the accumulators are
    values LLVM keeps in registers (Numba's own inlining of one generic tile took
    minutes to compile). Panels past nv read the last one again and are not
    stored, so the loop has no branch on nv."""
    add = _row_add if width == 4 else _row_add2

    @njit(**JIT)
    def tile(nv, K, A, a, sr, sk, P, p, pstride, C, c, ldc, cstride, mode, bias, b):
        U = lanes(P)
        p1 = p + min(1, nv - 1) * pstride
        p2 = p + min(2, nv - 1) * pstride
        p3 = p + min(3, nv - 1) * pstride
        acc0 = _row_start(nv, C, c, cstride, bias, b, mode)
        acc1 = _row_start(nv, C, c + ldc, cstride, bias, b, mode) if mr > 1 else acc0
        acc2 = _row_start(nv, C, c + 2 * ldc, cstride, bias, b, mode) if mr > 2 else acc0
        acc3 = _row_start(nv, C, c + 3 * ldc, cstride, bias, b, mode) if mr > 3 else acc0
        acc4 = _row_start(nv, C, c + 4 * ldc, cstride, bias, b, mode) if mr > 4 else acc0
        acc5 = _row_start(nv, C, c + 5 * ldc, cstride, bias, b, mode) if mr > 5 else acc0
        for k in range(K):
            kU = k * U
            w0 = load(P, p + kU)
            w = (w0, load(P, p1 + kU), load(P, p2 + kU), load(P, p3 + kU)) if width == 4 \
                else (w0, load(P, p1 + kU), w0, w0)
            ak = a + k * sk
            acc0 = add(broadcast(A, ak), w, acc0)
            if mr > 1:
                acc1 = add(broadcast(A, ak + sr), w, acc1)
            if mr > 2:
                acc2 = add(broadcast(A, ak + 2 * sr), w, acc2)
            if mr > 3:
                acc3 = add(broadcast(A, ak + 3 * sr), w, acc3)
            if mr > 4:
                acc4 = add(broadcast(A, ak + 4 * sr), w, acc4)
            if mr > 5:
                acc5 = add(broadcast(A, ak + 5 * sr), w, acc5)
        _row_store(nv, C, c, cstride, acc0)
        if mr > 1:
            _row_store(nv, C, c + ldc, cstride, acc1)
        if mr > 2:
            _row_store(nv, C, c + 2 * ldc, cstride, acc2)
        if mr > 3:
            _row_store(nv, C, c + 3 * ldc, cstride, acc3)
        if mr > 4:
            _row_store(nv, C, c + 4 * ldc, cstride, acc4)
        if mr > 5:
            _row_store(nv, C, c + 5 * ldc, cstride, acc5)
    return tile


# Tiles of 3 or more rows take NV panels, of one or two rows NV_FEW.
_tile1, _tile2 = _make_tile(1, NV_FEW), _make_tile(2, NV_FEW)
_tile3, _tile4, _tile5, _tile6 = (_make_tile(mr, NV) for mr in (3, 4, 5, 6))


@njit(**JIT)
def _tile_rows(mr, nv, K, A, a, sr, sk, P, p, pstride, C, c, ldc, cstride, mode, bias, b):
    """The tile of mr <= MR rows by nv panels."""
    if mr == 1:
        _tile1(nv, K, A, a, sr, sk, P, p, pstride, C, c, ldc, cstride, mode, bias, b)
    elif mr == 2:
        _tile2(nv, K, A, a, sr, sk, P, p, pstride, C, c, ldc, cstride, mode, bias, b)
    elif mr == 3:
        _tile3(nv, K, A, a, sr, sk, P, p, pstride, C, c, ldc, cstride, mode, bias, b)
    elif mr == 4:
        _tile4(nv, K, A, a, sr, sk, P, p, pstride, C, c, ldc, cstride, mode, bias, b)
    elif mr == 5:
        _tile5(nv, K, A, a, sr, sk, P, p, pstride, C, c, ldc, cstride, mode, bias, b)
    else:
        _tile6(nv, K, A, a, sr, sk, P, p, pstride, C, c, ldc, cstride, mode, bias, b)


@njit(**JIT)
def _tile_column(r0, M, mr_max, nv, K, A, a, sr, sk, P, p, pstride, C, c, ldc, cstride,
                 mode, bias, b):
    """The tiles of rows [r0, M) over nv panels, at most mr_max rows at a time."""
    for r in range(r0, M, mr_max):
        _tile_rows(min(mr_max, M - r), nv, K, A, a + r * sr, sr, sk, P, p, pstride, C,
                   c + r * ldc, ldc, cstride, mode, bias, b)


@njit(**JIT)
def _panel_gemm(M, K, npanels, A, a, sr, sk, P, p, pstride, C, c, ldc, cstride, mode, bias,
                b):
    """C (+)= op(A) @ panels, as the module docstring states. Panels outside, rows
    inside: a group of panels stays in L1 or L2 while every row block passes over
    it. Whole tiles of MR rows take NV panels; the one or two rows left over (or
    all, at M <= 2) take NV_FEW."""
    mfull = M - M % MR if M >= 3 else 0
    m_few = mfull if M - mfull <= 2 else M
    if m_few > 0:
        for v in range(0, npanels, NV):
            _tile_column(0, m_few, MR, min(NV, npanels - v), K, A, a, sr, sk, P,
                         p + v * pstride, pstride, C, c + v * cstride, ldc, cstride, mode,
                         bias, b + v * cstride)
    if m_few < M:
        for v in range(0, npanels, NV_FEW):
            _tile_column(m_few, M, 2, min(NV_FEW, npanels - v), K, A, a, sr, sk, P,
                         p + v * pstride, pstride, C, c + v * cstride, ldc, cstride, mode,
                         bias, b + v * cstride)


def _shared_gemm(M, K, npanels, A, sr, sk, P, pstride, C, ldc, cstride, mode, bias):
    """_panel_gemm on pointers to A, P, C and bias at their offsets, compiled once
    per dtype. The strides and the mode are variables of the tiles: a compile-time
    sk = 1 (or sr = 1 for A transposed) compiled the six tiles twice more and
    measured no faster (bench/RESULTS.md)."""
    _panel_gemm(M, K, npanels, A, 0, sr, sk, P, 0, pstride, C, 0, ldc, cstride, mode,
                bias, 0)


def _gemm_args(dtype):
    n, data = types.intp, types.CPointer(dtype)
    return n, n, n, data, n, n, data, n, data, n, n, n, data


_GEMM = Shared(_shared_gemm, "panel_gemm", _gemm_args)


@intrinsic
def panel_gemm(typingctx, M, K, npanels, A, a, sr, sk, P, p, pstride, C, c, ldc, cstride,
               mode, bias, b):
    """C (+)= op(A) @ panels on flat arrays, as the module docstring states: a call
    of the kernel compiled once per dtype (symbols.py), so that its code is not
    copied into every kernel that calls it."""
    dtype = A.dtype
    _GEMM.symbol(dtype)

    def codegen(context, builder, sig, args):
        t = sig.args

        def at(array, offset):
            return element_pointer(context, builder, t[array], args[array], args[offset],
                                   t[offset])

        def n(i):
            return context.cast(builder, args[i], t[i], types.intp)

        _GEMM.call(context, builder, dtype, [
            n(0), n(1), n(2), at(3, 4), n(5), n(6), at(7, 8), n(9), at(10, 11), n(12), n(13),
            n(14), at(15, 16)])
        return context.get_dummy_value()
    return types.none(M, K, npanels, A, a, sr, sk, P, p, pstride, C, c, ldc, cstride, mode,
                      bias, b), codegen


@njit(**JIT)
def pack_gate_panels(W, Wp, G, q0, q1):
    """Wp := the panels of W (K, G*H) for the unit blocks [q0, q1) of a thread,
    gate-major: panel v = k*(q1 - q0) + q - q0, columns k*H + q*U + u of W (zero
    past unit H), at G*q0*K*U + v*K*U; so one call of the panel kernel takes all
    of the thread's gates and units."""
    K, N = W.shape
    H = N // G
    U = lanes(Wp)
    flat = W.reshape(-1)
    for k in range(G):
        for q in range(q0, q1):
            at = G * q0 * K * U + (k * (q1 - q0) + q - q0) * K * U
            w = min(U, H - q * U)
            for r in range(K):
                if w == U:
                    # a whole vector: one load and one store, not U of each
                    store(Wp, at + r * U, load(flat, r * N + k * H + q * U))
                    continue
                for u in range(w):
                    Wp[at + r * U + u] = W[r, k * H + q * U + u]
                for u in range(w, U):
                    Wp[at + r * U + u] = 0


@njit(**JIT)
def pack_unit_blocks(W, Wp, q0, q1):
    """Wp := W (H, N) as panels for dA @ W.T, unit blocks [q0, q1): unit block q is
    the (N, U) panel at q*N*U of Wp, rows q*U + u of W as its columns, zero past
    unit H."""
    H, N = W.shape
    U = lanes(Wp)
    for q in range(q0, q1):
        panel = q * N * U
        w = min(U, H - q * U)
        for u in range(U):
            if u < w:
                row = W[q * U + u]
                for k in range(N):
                    Wp[panel + k * U + u] = row[k]
            else:
                for k in range(N):
                    Wp[panel + k * U + u] = 0


@njit(**JIT)
def blocks(H, U):
    """Unit blocks of U in H units."""
    return (H + U - 1) // U
