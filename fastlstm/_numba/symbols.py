"""Numba functions compiled once per dtype as C functions, which the kernels call
by name instead of linking a copy of them into each.

Numba links every callee's LLVM module into its caller, then optimises and
generates machine code for the whole: a function called from ten kernels is
optimised and compiled ten times over, and inlined at every call. The panel
kernel (panels.py) reached every kernel that way: the LSTM's forward and backward
kernels compiled in 43 s, and in 18 s with its body taken out (an experiment,
bench/RESULTS.md). Each cell's per-step functions were compiled twice a kernel,
in its parallel loop and in the one-thread path beside it. A Shared function is
compiled once per dtype as a C function (numba.cfunc, cached on disk like the
kernels), its address given to LLVM under a fixed name, and the kernels' code
holds only a call to that name, in memory and in the disk cache alike.

A kernel loaded from the disk cache needs the name defined before LLVM links it
(an unknown name is a fatal LLVM error, not an exception), so each Shared
function registers, on import, every dtype whose code is already in the disk
cache: the kernels that call it were compiled in the process that put it there.
A process that loads kernels another one cached while it ran (ahead.py's worker)
registers again first (register_cached).
"""
import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.ccallback import CFunc
from numba.core.errors import TypingError
from numba.extending import intrinsic

from .jit import JIT

DTYPES = (types.float32, types.float64)
_ALL = []   # every Shared function made in this process


def array(dtype, ndim):
    """The Numba type of a C-contiguous array, as a Shared function's argument."""
    return types.Array(dtype, ndim, "C")


class Shared:
    """pyfunc as a C function for each float dtype, named fastlstm_<name>_<dtype>,
    of the arguments args(dtype): Numba types of scalars and of C-contiguous
    arrays (array()); no return value. An array travels as the address of its
    Numba struct, which pyfunc reads as a[0]."""

    def __init__(self, pyfunc, name, args):
        self.pyfunc, self.name, self.args = pyfunc, name, args
        self._compiled = {}   # dtype -> CFunc, kept so that its code stays
        _ALL.append(self)
        for dtype in DTYPES:
            self.symbol(dtype, compile=False)

    def _c_args(self, dtype):
        return tuple(types.CPointer(t) if isinstance(t, types.Array) else t
                     for t in self.args(dtype))

    def symbol(self, dtype, compile=True):
        """The C name of the dtype's function, defined from now on: loaded from the
        disk cache, else compiled (None instead, without compile)."""
        name = f"fastlstm_{self.name}_{dtype}"
        if dtype in self._compiled:
            return name
        options = {k: v for k, v in JIT.items() if k not in ("cache", "nogil")}
        func = CFunc(self.pyfunc, (self._c_args(dtype), types.void), locals={},
                     options=options)
        func.enable_caching()
        if not compile and func._cache.load_overload(
                func._sig, func._targetdescr.target_context) is None:
            return None
        func.compile()
        llvm.add_symbol(name, func.address)
        self._compiled[dtype] = func
        return name

    def call(self, context, builder, dtype, values):
        """Lowers a call of the dtype's function on values, LLVM values of its C
        argument types."""
        fnty = ir.FunctionType(ir.VoidType(),
                               [context.get_value_type(t) for t in self._c_args(dtype)])
        builder.call(cgutils.get_or_insert_function(builder.module, fnty, self.symbol(dtype)),
                     values)

    def caller(self):
        """An intrinsic that calls the function from a kernel with its arguments,
        for the dtype of the first float array among them. Scalars are cast to their
        types; an array, which must be of its exact type, goes as the address of a
        copy of its struct without its reference count (meminfo): the call borrows
        it, and the threads of a step do not contend on one count."""
        shared = self

        @intrinsic
        def call(typingctx, *args):
            dtype = next(a.dtype for a in args
                         if isinstance(a, types.Array) and isinstance(a.dtype, types.Float))
            want = shared.args(dtype)
            if len(args) != len(want):
                raise TypingError(f"{shared.name}: {len(args)} arguments for {len(want)}")
            for have, t in zip(args, want):
                if isinstance(t, types.Array) and have != t:
                    raise TypingError(f"{shared.name}: {have} given for {t}")
            shared.symbol(dtype)

            def codegen(context, builder, sig, values):
                out = []
                for have, t, v in zip(args, want, cgutils.unpack_tuple(builder, values[0])):
                    if isinstance(t, types.Array):
                        a = context.make_array(have)(context, builder, v)
                        a.meminfo = cgutils.get_null_value(a.meminfo.type)
                        a.parent = cgutils.get_null_value(a.parent.type)
                        out.append(cgutils.alloca_once_value(builder, a._getvalue()))
                    else:
                        out.append(context.cast(builder, v, have, t))
                shared.call(context, builder, dtype, out)
                return context.get_dummy_value()
            return types.none(types.StarArgTuple.from_types(args)), codegen
        return call


def register_cached():
    """Defines the name of every Shared function's dtype that another process has
    put into the disk cache since this one started (ahead.py's worker), before any
    kernel that calls it loads from there."""
    for shared in _ALL:
        for dtype in DTYPES:
            shared.symbol(dtype, compile=False)
