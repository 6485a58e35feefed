"""The options every Numba kernel is compiled with."""

# nogil: the kernels release the GIL. cache: compiled code is kept on disk, so only
# a machine's first call compiles. error_model="numpy": division without a zero
# check (as cdivision in Cython), which would otherwise raise ZeroDivisionError
# and keep LLVM from vectorising the gate loops.
JIT = dict(nogil=True, cache=True, error_model="numpy")
