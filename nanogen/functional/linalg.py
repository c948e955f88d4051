"""Matrix products: ``matmul`` (batched, broadcasting, with PyTorch's 1-D rules) and ``linear``.

For C = A B:  dL/dA = dL/dC Bᵀ  and  dL/dB = Aᵀ dL/dC, each summed over broadcast batch dims.
Both are matmuls again, so the product is differentiable to any order.  On the GPU the arrays
are CuPy's and the product runs in cuBLAS.
"""
from __future__ import annotations

from ..autograd import Function
from ..kernels import blas
from ._util import unbroadcast

__all__ = ["matmul", "mm", "bmm", "linear", "outer", "dot"]


def _matmul(xp, a, b):
    """a @ b on arrays of ``xp``: on the CPU nanogen's threaded matmul (``kernels.blas``), which
    leaves the cores free for the kernels that follow; on the GPU cuBLAS."""
    a, b = _blas_operand(xp, a), _blas_operand(xp, b)
    return blas.matmul_of(xp)(a, b)


def _blas_operand(xp, a):
    """``a`` itself, or a contiguous copy when it has a zero stride: a broadcast view (the
    gradient of ``sum`` / ``mean`` is one) is not a BLAS layout, and NumPy's matmul would fall
    back to its slow non-BLAS loop for it."""
    return xp.ascontiguousarray(a) if 0 in a.strides else a


class MatMul(Function):
    def forward(self, a, b):
        return _matmul(self.xp, a, b)

    def backward(self, gy):
        a, b = self.inputs
        ga = unbroadcast(matmul(gy, b.mT), a.shape) if self.needs_input_grad[0] else None
        gb = unbroadcast(matmul(a.mT, gy), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def matmul(input, other):
    """``input @ other``: 1-D operands are promoted (a row or a column) and the added dim removed;
    leading dims broadcast."""
    from .shape import squeeze, unsqueeze
    if input.ndim == 0 or other.ndim == 0:
        raise ValueError("matmul: both arguments need at least one dimension")
    a = unsqueeze(input, 0) if input.ndim == 1 else input
    b = unsqueeze(other, -1) if other.ndim == 1 else other
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {tuple(input.shape)} and {tuple(other.shape)} cannot "
                         f"be multiplied ({a.shape[-1]} != {b.shape[-2]})")
    out = MatMul.apply(a, b)
    if other.ndim == 1:
        out = squeeze(out, -1)
    if input.ndim == 1:
        out = squeeze(out, -2 if other.ndim > 1 else -1)
    return out


def mm(input, mat2):
    if input.ndim != 2 or mat2.ndim != 2:
        raise ValueError(f"mm: expects 2-D tensors, got {input.ndim}-D and {mat2.ndim}-D")
    return matmul(input, mat2)


def bmm(input, mat2):
    if input.ndim != 3 or mat2.ndim != 3:
        raise ValueError(f"bmm: expects 3-D tensors, got {input.ndim}-D and {mat2.ndim}-D")
    return matmul(input, mat2)


def outer(input, vec2):
    return matmul(input.reshape(-1, 1), vec2.reshape(1, -1))


def dot(input, other):
    return (input * other).sum()


class Linear(Function):
    """y = x Wᵀ + b for x of shape (N, in) and W of shape (out, in).

    dL/dx = gy W,  dL/dW = gyᵀ x,  dL/db = Σ_n gy -- each computed directly in the layout of
    its input (a matmul through ``W.t()`` would hand W a transposed gradient to copy)."""

    def forward(self, x, w, *b):
        y = _matmul(self.xp, x, w.T)
        if b:
            y += b[0]
        return y

    def backward(self, gy):
        x, w = self.inputs[:2]
        gx = matmul(gy, w) if self.needs_input_grad[0] else None
        gw = matmul(gy.mT, x) if self.needs_input_grad[1] else None
        if len(self.inputs) == 2:
            return gx, gw
        gb = gy.sum(0) if self.needs_input_grad[2] else None
        return gx, gw, gb


def linear(input, weight, bias=None):
    """y = x Wᵀ + b, with W of shape (out_features, in_features); leading dims are flattened
    into one batch dim so the weight gradient is a single GEMM."""
    if input.shape[-1] != weight.shape[-1]:
        raise ValueError(f"linear: input has {input.shape[-1]} features (shape "
                         f"{tuple(input.shape)}) but the weight expects {weight.shape[-1]} "
                         f"(shape {tuple(weight.shape)})")
    if weight.ndim != 2 or (bias is not None and tuple(bias.shape) != (weight.shape[0],)):
        raise ValueError(f"linear: weight must be (out, in) and bias (out,), got "
                         f"{tuple(weight.shape)} and "
                         f"{None if bias is None else tuple(bias.shape)}")
    lead = input.shape[:-1]
    x = input.reshape(-1, input.shape[-1]) if input.ndim != 2 else input
    y = Linear.apply(x, weight) if bias is None else Linear.apply(x, weight, bias)
    return y.reshape(*lead, weight.shape[0]) if input.ndim != 2 else y
