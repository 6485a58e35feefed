"""One parallel region for a whole time loop: its threads meet at a barrier per
step, as the Cython kernels' OpenMP team does, instead of a Numba parallel region
per step (about 1 us each to enter: most of a batch-1 step's cost on 2 threads).

A spin barrier needs its P threads running at once, which a prange(P) does not
promise (an OpenMP runtime may give a region fewer threads, which then run the
iterations one after another). So the threads first meet (meet): the last to
arrive decides "go", a thread that waits too long decides "alone", once, by a
compare-and-swap, and no thread has done any work before the decision. On
"alone" every thread leaves, and the kernel runs its time loop on one thread.

The team's state is an int64 array of TEAM_STATE entries (team_state()).
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .jit import JIT

TEAM_STATE = 4
_COUNT, _GENERATION, _DECISION = 0, 1, 2
_PENDING, _GO, _ALONE = 0, 1, 2
# Polls of the decision before a thread gives up on the others (a few ms): a
# sleeping OpenMP thread wakes in tens of microseconds.
MEET_SPINS = 1 << 22


def _pointer(context, builder, array_type, array, index):
    a = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, a, [index])


@intrinsic
def _fetch_add(typingctx, state, index, value):
    """state[index] += value atomically (sequentially consistent); the old value."""
    sig = types.int64(state, types.intp, types.int64)

    def codegen(context, builder, sig, args):
        return builder.atomic_rmw("add", _pointer(context, builder, sig.args[0], args[0],
                                                  args[1]), args[2], "seq_cst")
    return sig, codegen


@intrinsic
def _load(typingctx, state, index):
    """state[index], read atomically (acquire)."""
    sig = types.int64(state, types.intp)

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_pointer(context, builder, sig.args[0], args[0], args[1]),
                                   "acquire", 8)
    return sig, codegen


@intrinsic
def _compare_swap(typingctx, state, index, expected, value):
    """state[index] := value if it holds expected, atomically; the value it held."""
    sig = types.int64(state, types.intp, types.int64, types.int64)

    def codegen(context, builder, sig, args):
        pair = builder.cmpxchg(_pointer(context, builder, sig.args[0], args[0], args[1]),
                               args[2], args[3], "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)
    return sig, codegen


@intrinsic
def _pause(typingctx):
    """The CPU's spin-wait hint (x86 pause), nothing elsewhere."""
    def codegen(context, builder, sig, args):
        if builder.module.triple.startswith("x86_64"):
            pause = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
            builder.call(pause, [])
        return context.get_dummy_value()
    return types.none(), codegen


@njit(**JIT)
def team_state():
    """A fresh team state (TEAM_STATE,), made outside the parallel kernels, where
    np.zeros would be a parallel loop of its own."""
    return np.zeros(TEAM_STATE, np.int64)


@njit(**JIT)
def meet(state, P):
    """Each of the P threads of a region calls it first: True for all of them once
    all P run at once; False for all where one gave up waiting (then the caller's
    one-thread loop must run, went_alone)."""
    if _fetch_add(state, _COUNT, 1) == P - 1:
        _compare_swap(state, _DECISION, _PENDING, _GO)
    spins = 0
    while _load(state, _DECISION) == _PENDING:
        spins += 1
        if spins > MEET_SPINS:
            _compare_swap(state, _DECISION, _PENDING, _ALONE)
        _pause()
    return _load(state, _DECISION) == _GO


@njit(**JIT)
def barrier(state, P):
    """The P threads of a region that met (meet) wait for each other; every write
    before it is seen by every thread after it. The count only grows: the P-th
    arrival of each round opens the next generation."""
    generation = _load(state, _GENERATION)
    if (_fetch_add(state, _COUNT, 1) + 1) % P == 0:
        _fetch_add(state, _GENERATION, 1)
    else:
        while _load(state, _GENERATION) == generation:
            _pause()


@njit(**JIT)
def went_alone(state):
    """After the region: whether its threads gave up meeting (meet)."""
    return state[_DECISION] == _ALONE
