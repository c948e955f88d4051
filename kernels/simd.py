"""SIMD vectors inside numba kernels: a float32 vector type and the few LLVM operations that a
register-blocked kernel is made of.

numba vectorises simple loops by itself, but not a kernel that must keep a block of results in
registers while it streams its operands: written with scalars or small arrays, the accumulators
live in memory and every multiply-add loads and stores them (a 3x3 convolution written that way
ran at 6-29 GFLOPS on one core).  Here a vector is a numba value whose LLVM type is
``<16 x float>``; locals of that type become SSA values, so LLVM keeps them in registers:

    acc = vzero()                     acc = <0, ..., 0>
    acc = vfma(vbcast(s), vload(a, i), acc)     acc += s * a[i : i + 16]   (one fused multiply-add)
    vstore(out, j, acc)               out[j : j + 16] = acc

``LANES`` = 16 float32 is one AVX-512 register (two AVX2 registers on CPUs without AVX-512: LLVM
splits the vector, and the results are the same).  ``vload`` / ``vstore`` take a 1-D contiguous
array and an element index; they do no bounds check, the caller guarantees
``0 <= i <= len(a) - LANES``.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

__all__ = ["LANES", "vzero", "vload", "vstore", "vbcast", "vfma", "vget"]

LANES = 16
_VEC = ir.VectorType(ir.FloatType(), LANES)
_I32 = ir.IntType(32)


class Float32Vector(types.Type):
    """The numba type of a ``<LANES x float>`` value."""

    def __init__(self):
        super().__init__(name=f"float32x{LANES}")


float32xN = Float32Vector()


@register_model(Float32Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VEC)


def _address(context, builder, array_type, array, index):
    """Pointer to ``array[index]`` as a vector pointer (1-D contiguous float32 array)."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), _VEC.as_pointer())


def _check_array(a):
    if not (isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == 1
            and a.layout == "C"):
        raise TypeError(f"SIMD loads and stores need a 1-D contiguous float32 array, got {a}")


@intrinsic
def vzero(typingctx):
    """The zero vector."""
    def codegen(context, builder, signature, args):
        return ir.Constant(_VEC, [0.0] * LANES)
    return float32xN(), codegen


@intrinsic
def vload(typingctx, array, index):
    """array[index : index + LANES] as a vector (unaligned load)."""
    _check_array(array)

    def codegen(context, builder, signature, args):
        load = builder.load(_address(context, builder, signature.args[0], *args))
        load.align = 4
        return load
    return float32xN(array, index), codegen


@intrinsic
def vstore(typingctx, array, index, vector):
    """array[index : index + LANES] = vector (unaligned store)."""
    _check_array(array)

    def codegen(context, builder, signature, args):
        store = builder.store(args[2], _address(context, builder, signature.args[0], *args[:2]))
        store.align = 4
        return context.get_dummy_value()
    return types.void(array, index, vector), codegen


@intrinsic
def vbcast(typingctx, scalar):
    """A vector with every lane equal to the float32 ``scalar``."""
    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], types.float32)
        one = builder.insert_element(ir.Constant(_VEC, ir.Undefined), value, ir.Constant(_I32, 0))
        return builder.shuffle_vector(one, ir.Constant(_VEC, ir.Undefined),
                                      ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))
    return float32xN(scalar), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """a * b + c lane by lane, rounded once (LLVM's fma intrinsic)."""
    def codegen(context, builder, signature, args):
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC] * 3),
                                             f"llvm.fma.v{LANES}f32")
        return builder.call(fma, args)
    return float32xN(float32xN, float32xN, float32xN), codegen


@intrinsic
def vget(typingctx, vector, lane):
    """Lane ``lane`` of a vector, as a float32."""
    def codegen(context, builder, signature, args):
        index = context.cast(builder, args[1], signature.args[1], types.int32)
        return builder.extract_element(args[0], index)
    return types.float32(vector, lane), codegen
