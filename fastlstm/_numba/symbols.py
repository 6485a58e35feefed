"""Numba functions compiled once per dtype as C functions, which the kernels call
by name instead of linking a copy of them into each.

Numba links every callee's LLVM module into its caller, then optimises and
generates machine code for the whole: a function called from ten kernels is
optimised and compiled ten times over, and inlined at every call. The panel
kernel (panels.py) reached every kernel that way: the LSTM's forward and backward
kernels compiled in 43 s, and in 18 s with its body taken out (an experiment,
bench/RESULTS.md). A Shared function is compiled once
per dtype as a C function (numba.cfunc, cached on disk like the kernels), its
address given to LLVM under a fixed name, and the kernels' code holds only a call
to that name, in memory and in the disk cache alike.

A kernel loaded from the disk cache needs the name defined before LLVM links it
(an unknown name is a fatal LLVM error, not an exception), so each Shared
function registers, on import, every dtype whose code is already in the disk
cache: the kernels that call it were compiled in the process that put it there.
"""
import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.ccallback import CFunc

from .jit import JIT

DTYPES = (types.float32, types.float64)


class Shared:
    """pyfunc as a C function of arguments args(dtype) (Numba types; no return
    value) for each float dtype, named fastlstm_<name>_<dtype>."""

    def __init__(self, pyfunc, name, args):
        self.pyfunc, self.name, self.args = pyfunc, name, args
        self._compiled = {}   # dtype -> CFunc, kept so that its code stays
        for dtype in DTYPES:
            self.symbol(dtype, compile=False)

    def symbol(self, dtype, compile=True):
        """The C name of the dtype's function, defined from now on: loaded from the
        disk cache, else compiled (None instead, without compile)."""
        name = f"fastlstm_{self.name}_{dtype}"
        if dtype in self._compiled:
            return name
        options = {k: v for k, v in JIT.items() if k not in ("cache", "nogil")}
        func = CFunc(self.pyfunc, (self.args(dtype), types.void), locals={}, options=options)
        func.enable_caching()
        if not compile and func._cache.load_overload(
                func._sig, func._targetdescr.target_context) is None:
            return None
        func.compile()
        llvm.add_symbol(name, func.address)
        self._compiled[dtype] = func
        return name

    def call(self, context, builder, dtype, values):
        """Lowers a call of the dtype's function on values, LLVM values of its
        argument types."""
        fnty = ir.FunctionType(ir.VoidType(),
                               [context.get_value_type(t) for t in self.args(dtype)])
        builder.call(cgutils.get_or_insert_function(builder.module, fnty, self.symbol(dtype)),
                     values)
