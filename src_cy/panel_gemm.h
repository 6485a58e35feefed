/* The register-tiled GEMM on weights packed into panels (docs/DESIGN.md, "The
 * packed panels"): the per-step recurrent product h_{t-1} Wh, and the input
 * projection, the weight gradients and dx where their columns are whole panels.
 *
 * BLAS packs its B operand again at every call: for the per-step h_{t-1} Wh that
 * repacking took more time than the multiply itself (perf, B=16 H=256). Here the
 * weights are packed once, before the time loop, into panels of K rows by one
 * vector of FL_U columns, and each step streams them through a register tile.
 *
 *   fl_panel_gemm_T(M, K, npanels, A, lda, P, pstride, C, ldc, cstride, add, bias)
 *     for r < M, v < npanels, u < FL_U:
 *       C[r*ldc + v*cstride + u] (+)= bias[v*cstride + u]
 *                                     + sum_k A[r*lda + k] * P[v*pstride + k*FL_U + u]
 *   fl_panel_gemm_at_T: the same with A[k*lda + r], A given transposed (the
 *     weight gradients X.T dA, where X is (K, M) row-major).
 *
 * Panel v's columns go to C at v*cstride, so one call can write the gate blocks
 * of a group of units (cstride = the gate blocks' distance) or consecutive units
 * (cstride = FL_U). C is overwritten, or added to where `add` is non-zero; every
 * panel writes FL_U columns, so C is padded to whole panels. Where bias is not
 * NULL (and add is zero), each row of C starts from it instead of from zero: the
 * input projection's + b costs no pass of its own over C.
 *
 * GCC vector extensions of the level's width: setup.py compiles this once per
 * instruction-set level (docs/DESIGN.md, "One build for every x86-64"), and the
 * macros its -march defines set the vector width and the register tile below.
 */
#ifndef FASTLSTM_PANEL_GEMM_H
#define FASTLSTM_PANEL_GEMM_H

/* The register tile: FL_MR rows by FL_NV panels of accumulators, with FL_NV
 * panel vectors and a broadcast beside them. On AVX2's 16 registers 6 x 2 (12
 * accumulators) ran the step product at 73-86 GFLOP/s on one Zen 3 core, against
 * 46-61 for 4 x 3 and 50-54 for the 2 x 4 it replaced (a C loop over the kernel,
 * M = 16 to 256 rows, K = 128 and 256: bench/RESULTS.md, 2026-12-01). A row alone
 * (batch 1, the leftover rows) is load-bound with few accumulators, so one or two
 * rows take FL_NV_FEW panels at a time: at M = 1, 4 panels ran at 30-41 GFLOP/s
 * and 2 at 22. */
#if defined(__AVX512F__)
#define FL_VBYTES 64
#define FL_MR 6   /* 6 x 4 accumulators + 4 panel vectors of the 32 registers */
#define FL_NV 4
#elif defined(__AVX__)
#define FL_VBYTES 32
#define FL_MR 6   /* 6 x 2 accumulators + 2 panel vectors + a broadcast of 16 */
#define FL_NV 2
#else
#define FL_VBYTES 16
#define FL_MR 6
#define FL_NV 2
#endif
#define FL_NV_FEW 4   /* panels per tile of one or two rows */

#define FL_INLINE static inline __attribute__((always_inline))

#define FL_MADD(acc, a, w) ((acc) += (a) * (w))

/* The kernels for operands of type TA (A's elements and the panels') summed into
 * accumulators, C and bias of type TC; MADD(acc, a, w) adds one A element a times
 * one panel vector w into acc, ATTR the functions' attributes. */
#define FL_DEFINE_PANEL_GEMM(T, SUF) FL_DEFINE_PANEL_GEMM_OF(T, T, SUF, , FL_MADD)

#define FL_DEFINE_PANEL_GEMM_OF(TA, T, SUF, ATTR, MADD)                                \
typedef T fl_vec_##SUF __attribute__((vector_size(FL_VBYTES), aligned(sizeof(T))));    \
typedef TA fl_pvec_##SUF __attribute__((vector_size(FL_VBYTES), aligned(sizeof(TA))));\
enum { FL_U_##SUF = FL_VBYTES / sizeof(T) };                                           \
                                                                                       \
/* One mr x nv tile; mr, nv are constants after inlining, so acc lives in registers */ \
FL_INLINE ATTR void fl_tile_##SUF(const int mr, const int nv, long K, const TA* A,     \
                             long sr, long sk, const TA* P, long pstride, T* C, long ldc, \
                             long cstride, int add, const T* bias)                     \
{                                                                                      \
    fl_vec_##SUF acc[FL_MR][FL_NV_FEW];                                                \
    _Pragma("GCC unroll 8") for (int r = 0; r < mr; r++)                               \
        _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                           \
            acc[r][v] = add    ? *(fl_vec_##SUF*)(C + r * ldc + v * cstride)           \
                      : bias   ? *(const fl_vec_##SUF*)(bias + v * cstride)            \
                               : (fl_vec_##SUF){0};                                    \
    for (long k = 0; k < K; k++) {                                                     \
        fl_pvec_##SUF w[FL_NV_FEW];                                                    \
        _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                           \
            w[v] = *(const fl_pvec_##SUF*)(P + v * pstride + k * FL_U_##SUF);          \
        _Pragma("GCC unroll 8") for (int r = 0; r < mr; r++) {                         \
            const TA a = A[r * sr + k * sk];                                           \
            _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                       \
                MADD(acc[r][v], a, w[v]);                                              \
        }                                                                              \
    }                                                                                  \
    _Pragma("GCC unroll 8") for (int r = 0; r < mr; r++)                               \
        _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                           \
            *(fl_vec_##SUF*)(C + r * ldc + v * cstride) = acc[r][v];                   \
}                                                                                      \
                                                                                       \
FL_INLINE ATTR void fl_tile_rows_##SUF(int mr, const int nv, long K, const TA* A,     \
                                  long sr, long sk, const TA* P, long pstride, T* C, long ldc, \
                                  long cstride, int add, const T* bias)                \
{                                                                                      \
    switch (mr) {                                                                      \
    case 1: fl_tile_##SUF(1, nv, K, A, sr, sk, P, pstride, C, ldc, cstride, add, bias); break; \
    case 2: fl_tile_##SUF(2, nv, K, A, sr, sk, P, pstride, C, ldc, cstride, add, bias); break; \
    case 3: fl_tile_##SUF(3, nv, K, A, sr, sk, P, pstride, C, ldc, cstride, add, bias); break; \
    case 4: fl_tile_##SUF(4, nv, K, A, sr, sk, P, pstride, C, ldc, cstride, add, bias); break; \
    case 5: fl_tile_##SUF(5, nv, K, A, sr, sk, P, pstride, C, ldc, cstride, add, bias); break; \
    default: fl_tile_##SUF(6, nv, K, A, sr, sk, P, pstride, C, ldc, cstride, add, bias);      \
    }                                                                                  \
}                                                                                      \
                                                                                       \
/* The tiles of the rows [r0, M) over panels [v, v + nv), nv <= FL_NV_FEW; rows of at  \
   most mr_max at a time. */                                                           \
FL_INLINE ATTR void fl_tile_column_##SUF(long r0, long M, int mr_max, const int nv,  \
                                    long K, const TA* A, long sr, long sk, const TA* P, \
                                    long pstride, T* C, long ldc, long cstride,        \
                                    int add, const T* bias)                            \
{                                                                                      \
    for (long r = r0; r < M; r += mr_max) {                                            \
        const int mr = M - r < mr_max ? (int)(M - r) : mr_max;                         \
        fl_tile_rows_##SUF(mr, nv, K, A + r * sr, sr, sk, P, pstride, C + r * ldc,     \
                           ldc, cstride, add, bias);                                   \
    }                                                                                  \
}                                                                                      \
                                                                                       \
FL_INLINE ATTR void fl_panels_##SUF(long M, long K, long npanels, const TA* A, long sr, \
                               long sk, const TA* P, long pstride, T* C, long ldc,     \
                               long cstride, int add, const T* bias)                   \
{                                                                                      \
    /* Panels outside, rows inside: a group of panels (K x nv vectors) stays in L1     \
       or L2 while every row block passes over it. Whole tiles of FL_MR rows take      \
       FL_NV panels; the one or two rows left over (or all, at M <= 2) FL_NV_FEW. */   \
    const long mfull = M >= 3 ? M - M % FL_MR : 0;                                     \
    const long M_few = M - mfull <= 2 ? mfull : M;                                     \
    for (long v = 0; v < npanels && M_few > 0; v += FL_NV) {                           \
        const long nv = npanels - v < FL_NV ? npanels - v : FL_NV;                     \
        const TA* p = P + v * pstride;                                                 \
        T* c = C + v * cstride;                                                        \
        const T* bv = bias ? bias + v * cstride : bias;                                \
        switch (nv) {                                                                  \
        case 1: fl_tile_column_##SUF(0, M_few, FL_MR, 1, K, A, sr, sk, p, pstride, c, ldc, cstride, add, bv); break; \
        case 2: fl_tile_column_##SUF(0, M_few, FL_MR, 2, K, A, sr, sk, p, pstride, c, ldc, cstride, add, bv); break; \
        case 3: fl_tile_column_##SUF(0, M_few, FL_MR, FL_NV >= 3 ? 3 : 1, K, A, sr, sk, p, pstride, c, ldc, cstride, add, bv); break; \
        default: fl_tile_column_##SUF(0, M_few, FL_MR, FL_NV >= 4 ? 4 : 1, K, A, sr, sk, p, pstride, c, ldc, cstride, add, bv); \
        }                                                                              \
    }                                                                                  \
    for (long v = 0; v < npanels && M_few < M; v += FL_NV_FEW) {                       \
        const long nv = npanels - v < FL_NV_FEW ? npanels - v : FL_NV_FEW;             \
        const TA* p = P + v * pstride;                                                 \
        T* c = C + v * cstride;                                                        \
        const T* bv = bias ? bias + v * cstride : bias;                                \
        switch (nv) {                                                                  \
        case 1: fl_tile_column_##SUF(M_few, M, 2, 1, K, A, sr, sk, p, pstride, c, ldc, cstride, add, bv); break; \
        case 2: fl_tile_column_##SUF(M_few, M, 2, 2, K, A, sr, sk, p, pstride, c, ldc, cstride, add, bv); break; \
        case 3: fl_tile_column_##SUF(M_few, M, 2, 3, K, A, sr, sk, p, pstride, c, ldc, cstride, add, bv); break; \
        default: fl_tile_column_##SUF(M_few, M, 2, 4, K, A, sr, sk, p, pstride, c, ldc, cstride, add, bv); \
        }                                                                              \
    }                                                                                  \
}                                                                                      \
                                                                                       \
/* A row-major (M, K): its rows are contiguous. */                                     \
static ATTR void fl_panel_gemm_##SUF(long M, long K, long npanels, const TA* A,        \
                                long lda, const TA* P, long pstride, T* C, long ldc, long cstride, \
                                int add, const T* bias)                                \
{                                                                                      \
    fl_panels_##SUF(M, K, npanels, A, lda, 1, P, pstride, C, ldc, cstride, add, bias); \
}                                                                                      \
                                                                                       \
/* A given as its transpose, row-major (K, M), the tile's rows side by side. */        \
static ATTR void fl_panel_gemm_at_##SUF(long M, long K, long npanels, const TA* A,     \
                                   long lda, const TA* P, long pstride, T* C, long ldc, \
                                   long cstride, int add, const T* bias)               \
{                                                                                      \
    fl_panels_##SUF(M, K, npanels, A, 1, lda, P, pstride, C, ldc, cstride, add, bias); \
}

FL_DEFINE_PANEL_GEMM(float, f)
FL_DEFINE_PANEL_GEMM(double, d)

/* bf16 operands, fp32 accumulators (docs/DESIGN.md, "bf16"). An fl_bf2 holds two
 * bf16 numbers of consecutive k, the even k in its low half, as AVX512_BF16's
 * vdpbf16ps takes them: A's rows and the panels come in such pairs, K counts
 * pairs, and a panel is K pairs by FL_U_f columns, one vector of fl_bf2 a pair.
 * Each kernel adds, per pair, the odd product and then the even one into fp32,
 * as vdpbf16ps does. A product of two bf16 numbers is exact in fp32, so the
 * emulated kernel (any CPU) and the native one (vdpbf16ps) differ only where
 * vdpbf16ps flushes subnormals to zero. */
typedef unsigned int fl_bf2;
enum { FL_BF16_EMULATED = 1, FL_BF16_NATIVE = 2 };

/* x rounded to bf16, to nearest, ties to even: the upper 16 bits of its fp32 */
static inline unsigned int fl_bf16_round(float x)
{
    union { float f; unsigned int u; } v = { x };
    return (v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16;
}

static inline float fl_bf16_float(unsigned int bits)
{
    union { unsigned int u; float f; } v = { bits << 16 };
    return v.f;
}

#define FL_MADD_BF16_EMULATED(acc, a, w)                                              \
    ((acc) += fl_bf16_float((a) >> 16) * (fl_vec_f)((w) & 0xffff0000u),                \
     (acc) += fl_bf16_float((a) & 0xffffu) * (fl_vec_f)((w) << 16))
FL_DEFINE_PANEL_GEMM_OF(fl_bf2, float, bfe, , FL_MADD_BF16_EMULATED)

#if defined(__AVX512F__) && (defined(__clang__) ? __clang_major__ >= 9 : __GNUC__ >= 10)
#include <immintrin.h>
#define FL_BF16_DP 1   /* this level holds the native kernel */
#define FL_MADD_BF16_DP(acc, a, w)                                                     \
    ((acc) = (fl_vec_f)_mm512_dpbf16_ps((__m512)(acc),                                 \
                                        (__m512bh)_mm512_set1_epi32((int)(a)),         \
                                        (__m512bh)(w)))
FL_DEFINE_PANEL_GEMM_OF(fl_bf2, float, bfn, __attribute__((target("avx512bf16"))),    \
                        FL_MADD_BF16_DP)
#else
#define FL_BF16_DP 0
#endif

/* fl_panel_gemm_f on bf16 pairs, A given transposed where a_trans is set (as
 * fl_panel_gemm_at_f). mode FL_BF16_NATIVE runs vdpbf16ps (the caller has
 * checked the CPU has it), FL_BF16_EMULATED the same sums on fp32 FMAs. */
static void fl_panel_gemm_bf(int mode, int a_trans, long M, long K, long npanels,
                             const fl_bf2* A, long lda, const fl_bf2* P, long pstride,
                             float* C, long ldc, long cstride, int add, const float* bias)
{
#if FL_BF16_DP
    if (mode == FL_BF16_NATIVE) {
        if (a_trans)
            fl_panel_gemm_at_bfn(M, K, npanels, A, lda, P, pstride, C, ldc, cstride, add,
                                 bias);
        else
            fl_panel_gemm_bfn(M, K, npanels, A, lda, P, pstride, C, ldc, cstride, add,
                              bias);
        return;
    }
#endif
    if (a_trans)
        fl_panel_gemm_at_bfe(M, K, npanels, A, lda, P, pstride, C, ldc, cstride, add, bias);
    else
        fl_panel_gemm_bfe(M, K, npanels, A, lda, P, pstride, C, ldc, cstride, add, bias);
}

#endif
