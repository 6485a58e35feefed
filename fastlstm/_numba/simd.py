"""SIMD vectors for the Numba kernels: one machine vector of float32 or float64 as
a Numba value, and the loads, stores and multiply-adds of the panel kernel
(panels.py) on it.

Numba has no vector type, and LLVM did not keep a register tile of scalars in
vector registers; these intrinsics hand LLVM its vector IR directly, so the
accumulators of a tile are values LLVM keeps in registers. Indices are element
offsets from an array's data pointer (or from a CPointer), with no bounds or
negative-index checks: the callers own the layout, as the Cython kernels'
pointers do.
"""
import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, models, register_model


def vector_bytes():
    """The widest vector of the machine Numba compiles for: 64 bytes with AVX-512,
    32 with AVX, else 16. Another width gives the same results, slower (LLVM
    splits or under-fills the vectors)."""
    features = llvm.get_host_cpu_features()
    if features.get("avx512f"):
        return 64
    return 32 if features.get("avx") else 16


VECTOR_BYTES = vector_bytes()


def lanes_of(dtype):
    """Elements of one vector of a NumPy or Numba float dtype: U, a panel's width."""
    return VECTOR_BYTES // (dtype.bitwidth // 8 if isinstance(dtype, types.Float)
                            else dtype.itemsize)


class Vector(types.Type):
    """One SIMD vector of `lanes` elements of a float dtype."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.lanes = lanes_of(dtype)
        super().__init__(name=f"Vector({dtype} x {self.lanes})")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.lanes))


def element_pointer(context, builder, array_type, array, index, index_type):
    """The address of element `index` of an array, or of a pointer's (CPointer)."""
    data = array if isinstance(array_type, types.CPointer) else \
        context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [context.cast(builder, index, index_type, types.intp)])


def _pointer(context, builder, array_type, array, index, index_type, vector_type):
    """The address of element `index` of the array, as a pointer to a vector."""
    element = element_pointer(context, builder, array_type, array, index, index_type)
    return builder.bitcast(element, context.get_value_type(vector_type).as_pointer())


@intrinsic
def lanes(typingctx, array):
    """U: the elements of one vector of the array's dtype, a compile-time constant."""
    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, lanes_of(sig.args[0].dtype))
    return types.intp(array), codegen


@intrinsic
def zeros(typingctx, array):
    """A vector of zeros of the array's dtype."""
    vector = Vector(array.dtype)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vector), None)
    return vector(array), codegen


@intrinsic
def load(typingctx, array, index):
    """The vector of elements [index, index + U) of the array."""
    vector = Vector(array.dtype)

    def codegen(context, builder, sig, args):
        at = _pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1], vector)
        return builder.load(at, align=array.dtype.bitwidth // 8)
    return vector(array, index), codegen


@intrinsic
def store(typingctx, array, index, value):
    """Elements [index, index + U) of the array := the vector."""
    def codegen(context, builder, sig, args):
        at = _pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1],
                      sig.args[2])
        builder.store(args[2], at, align=array.dtype.bitwidth // 8)
        return context.get_dummy_value()
    return types.none(array, index, value), codegen


@intrinsic
def broadcast(typingctx, array, index):
    """A vector of U copies of element `index` of the array."""
    vector = Vector(array.dtype)

    def codegen(context, builder, sig, args):
        value = builder.load(element_pointer(context, builder, sig.args[0], args[0], args[1],
                                             sig.args[1]))
        vty = context.get_value_type(vector)
        one = builder.insert_element(ir.Constant(vty, ir.Undefined), value,
                                     ir.Constant(ir.IntType(32), 0))
        mask = ir.Constant(ir.VectorType(ir.IntType(32), vector.lanes), [0] * vector.lanes)
        return builder.shuffle_vector(one, ir.Constant(vty, ir.Undefined), mask)
    return vector(array, index), codegen


@intrinsic
def multiply_add(typingctx, a, w, acc):
    """acc + a * w, elementwise, one fused multiply-add where the machine has it
    (the Cython kernels' GCC contracts the same way)."""
    def codegen(context, builder, sig, args):
        product = builder.fmul(args[0], args[1], flags=("contract",))
        return builder.fadd(args[2], product, flags=("contract",))
    if isinstance(a, Vector) and a == w == acc:
        return acc(a, w, acc), codegen

