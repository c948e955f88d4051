"""Elementwise ops: arithmetic with broadcasting, unary math, clamp, where, maximum/minimum.

Each op is a Function with its forward (on arrays) and backward (on Tensors, from
differentiable ops) side by side.  Broadcasting is undone in the backward by
:func:`~nanogen.functional._util.unbroadcast` (a sum over the broadcast axes).
Ops whose derivative is piecewise constant (relu-like masks, abs, clamp) capture the mask as a
constant array, so their backward is ``gy * mask`` and stays differentiable in ``gy``.
Piecewise-constant ops (floor, ceil, round, sign, ``div(rounding_mode="floor")``) follow
PyTorch: their results stay on the graph and their gradient is zeros; ``floor_divide``'s
backward raises, as PyTorch's does.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Function
from ..backend import Device, cupyx_module, to_device_array
from ..tensor import Tensor
from ._util import as_tensor_like, binary_operands, unbroadcast

__all__ = ["add", "sub", "mul", "div", "true_divide", "neg", "pow", "exp", "log", "log1p",
           "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "abs", "clamp", "clip", "where",
           "maximum", "minimum", "square", "sign", "floor", "ceil", "round", "eq", "ne", "lt",
           "le", "gt", "ge", "logical_not", "logical_and", "logical_or", "floor_divide",
           "remainder", "cast", "to_device", "clone", "masked_fill", "isfinite", "isnan", "erf",
           "normal_cdf", "expm1", "reciprocal", "lerp"]


def _const(array, like: Tensor) -> Tensor:
    return Tensor._make(array, like._device)


# ---------------------------------------------------------------- arithmetic
class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, gy):
        a, b = self.inputs
        return unbroadcast(gy, a.shape), unbroadcast(gy, b.shape)


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, gy):
        a, b = self.inputs
        gb = unbroadcast(-gy, b.shape) if self.needs_input_grad[1] else None
        return unbroadcast(gy, a.shape), gb


class Mul(Function):
    def forward(self, a, b):
        return a * b

    def backward(self, gy):
        a, b = self.inputs
        ga = unbroadcast(gy * b, a.shape) if self.needs_input_grad[0] else None
        gb = unbroadcast(gy * a, b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    """y = a / b;  dy/da = 1 / b,  dy/db = -a / b²."""

    def forward(self, a, b):
        return a / b

    def backward(self, gy):
        a, b = self.inputs
        ga = unbroadcast(gy / b, a.shape) if self.needs_input_grad[0] else None
        gb = unbroadcast(-gy * a / (b * b), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class PowScalar(Function):
    """y = x^p for a constant p;  dy/dx = p x^(p-1)."""

    def forward(self, x):
        return x ** self.exponent

    def backward(self, gy):
        (x,) = self.inputs
        p = self.exponent
        if p == 0:
            return gy * 0.0
        if p == 1:
            return gy
        if p == 2:
            return gy * (x * 2.0)
        return gy * (pow(x, p - 1) * float(p))


class Pow(Function):
    """y = a^b;  dy/da = b a^(b-1),  dy/db = y log a."""

    keep_output = True

    def forward(self, a, b):
        return a ** b

    def backward(self, gy):
        a, b = self.inputs
        ga = unbroadcast(gy * b * pow(a, b - 1.0), a.shape) if self.needs_input_grad[0] else None
        gb = unbroadcast(gy * self.output * log(a), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def _is_bool(x):
    """A bool tensor or a Python / NumPy bool (PyTorch wraps the latter as a bool tensor)."""
    return x.data.dtype.kind == "b" if isinstance(x, Tensor) else isinstance(x, (bool, np.bool_))


def _times_alpha(b, alpha, op):
    """alpha · b with alpha taken in b's (the result's) kind, by PyTorch's rules: a bool result
    reads alpha as a bool (a + 2 b = a or b), an integer one refuses a float alpha, and only a
    bool result takes a bool alpha."""
    kind = b.data.dtype.kind
    if isinstance(alpha, (bool, np.bool_)) and kind != "b":
        raise RuntimeError(f"{op}: a bool alpha ({alpha}) needs bool tensors, got {b.dtype}")
    if kind in "biu" and not isinstance(alpha, (bool, np.bool_, numbers.Integral)):
        raise RuntimeError(f"{op}: alpha must be an integer for {b.dtype} tensors, got {alpha!r}")
    return mul(b, bool(alpha) if kind == "b" else alpha)


def add(input, other, alpha=1):
    """``input + alpha * other``; a bool tensor plus a Python int is int64 (PyTorch's
    promotion, see :func:`~nanogen.functional._util.binary_operands`), two bools stay bool."""
    a, b = binary_operands(input, other, "add")
    if alpha != 1 or _is_bool(alpha):
        b = _times_alpha(b, alpha, "add")
    return Add.apply(a, b)


def sub(input, other, alpha=1):
    """``input - alpha * other``; as in PyTorch, not with a bool operand (a mask)."""
    if _is_bool(input) and _is_bool(other):
        raise RuntimeError("sub: subtraction, the `-` operator, with two bool tensors is not "
                           "supported; use ne(a, b) (a != b, their exclusive or) instead")
    if _is_bool(input) or _is_bool(other):
        raise RuntimeError("sub: subtraction, the `-` operator, with a bool tensor is not "
                           "supported; to invert a mask use `~` or logical_not() instead")
    a, b = binary_operands(input, other, "sub")
    if alpha != 1 or _is_bool(alpha):
        b = _times_alpha(b, alpha, "sub")
    return Sub.apply(a, b)


def mul(input, other):
    return Mul.apply(*binary_operands(input, other, "mul"))


def div(input, other, rounding_mode=None):
    """``input / other``; ``rounding_mode="floor"``: ⌊input / other⌋ with a zero gradient
    (PyTorch's, unlike :func:`floor_divide`, whose backward raises)."""
    if rounding_mode == "floor":
        return DivFloor.apply(*binary_operands(input, other, "div"))
    if rounding_mode is not None:
        raise ValueError(f"div: rounding_mode must be None or 'floor', got {rounding_mode!r}")
    a, b = binary_operands(input, other, "div")
    if a.data.dtype.kind != "f":      # true division of integers gives floats, as in PyTorch
        from ..tensor import get_default_dtype
        a, b = a.to(get_default_dtype()), b.to(get_default_dtype())
    return Div.apply(a, b)


true_divide = div


def neg(input):
    """``-input``; as in PyTorch, not of a bool tensor (a mask)."""
    if _is_bool(input):
        raise RuntimeError("neg: negation, the `-` operator, of a bool tensor is not supported; "
                           "to invert a mask use `~` or logical_not() instead")
    return Neg.apply(input)


def pow(input, exponent):
    """``input ** exponent``; a constant exponent takes the cheaper PowScalar path."""
    if isinstance(input, Tensor) and not isinstance(exponent, Tensor) and np.ndim(exponent) == 0:
        return PowScalar.apply(input, exponent=float(exponent) if isinstance(exponent, float)
                               or input.dtype.kind == "f" else exponent)
    return Pow.apply(*binary_operands(input, exponent, "pow"))


def square(input):
    return mul(input, input)


def reciprocal(input):
    return div(1.0, input)


def lerp(input, end, weight):
    """input + weight * (end - input)."""
    return add(input, mul(sub(end, input), weight))


# ---------------------------------------------------------------- unary math
class Exp(Function):
    keep_output = True

    def forward(self, x):
        return self.xp.exp(x)

    def backward(self, gy):
        return gy * self.output


class Expm1(Function):
    keep_output = True

    def forward(self, x):
        return self.xp.expm1(x)

    def backward(self, gy):
        return gy * (self.output + 1.0)


class Log(Function):
    def forward(self, x):
        return self.xp.log(x)

    def backward(self, gy):
        return gy / self.inputs[0]


class Log1p(Function):
    def forward(self, x):
        return self.xp.log1p(x)

    def backward(self, gy):
        return gy / (self.inputs[0] + 1.0)


class Sqrt(Function):
    """y = √x;  dy/dx = 1 / (2y)."""

    keep_output = True

    def forward(self, x):
        return self.xp.sqrt(x)

    def backward(self, gy):
        return gy * 0.5 / self.output


class Rsqrt(Function):
    """y = x^(-1/2);  dy/dx = -y³ / 2."""

    keep_output = True

    def forward(self, x):
        return 1.0 / self.xp.sqrt(x)

    def backward(self, gy):
        y = self.output
        return gy * (y * y * y) * (-0.5)


class Sin(Function):
    def forward(self, x):
        return self.xp.sin(x)

    def backward(self, gy):
        return gy * cos(self.inputs[0])


class Cos(Function):
    def forward(self, x):
        return self.xp.cos(x)

    def backward(self, gy):
        return -gy * sin(self.inputs[0])


class Tanh(Function):
    """y = tanh x;  dy/dx = 1 - y²."""

    keep_output = True

    def forward(self, x):
        return self.xp.tanh(x)

    def backward(self, gy):
        y = self.output
        return gy * (1.0 - y * y)


class Sigmoid(Function):
    """y = 1 / (1 + e^-x);  dy/dx = y (1 - y)."""

    keep_output = True

    def forward(self, x):
        return _sigmoid(self.xp, x)

    def backward(self, gy):
        y = self.output
        return gy * (y * (1.0 - y))


def _sigmoid(xp, x):
    """1 / (1 + e^-x) in three in-place passes.  For x < -88 (float32) e^-x overflows to inf
    and 1/inf = 0 is the right answer, so the overflow warning is silenced, not avoided."""
    if xp is np:
        with np.errstate(over="ignore"):
            e = np.asarray(np.exp(np.negative(x)))      # (a 0-d input gives a scalar)
    else:
        e = xp.exp(-x)
    e += 1
    return xp.reciprocal(e, out=e)


class Erf(Function):
    """erf x;  d/dx erf x = 2/√π · e^(-x²)."""

    def forward(self, x):
        return _erf(self.xp, x)

    def backward(self, gy):
        x = self.inputs[0]
        return gy * (exp(-(x * x)) * (2.0 / np.sqrt(np.pi)))


def _erf(xp, x):
    """erf in x's dtype: float32 on the CPU through the rational approximation of
    :func:`nanogen.kernels.activation.erf` (30x faster than SciPy's, which computes in double),
    everything else through SciPy / CuPy."""
    if xp is np:
        if x.dtype == np.float32:
            from ..kernels.activation import erf
            return erf(x)
        from scipy.special import erf as sp_erf
    else:                   # CuPy's (the simulated one under NUMBA_ENABLE_CUDASIM)
        sp_erf = cupyx_module(xp, "scipy.special").erf
    return sp_erf(x).astype(x.dtype, copy=False)


class Abs(Function):
    def forward(self, x):
        self.sign = self.xp.sign(x) if self.requires_grad else None
        return self.xp.abs(x)

    def backward(self, gy):
        return gy * _const(self.sign, gy)


class Clamp(Function):
    """clamp(x, lo, hi); the gradient passes where lo <= x <= hi (PyTorch's convention)."""

    def forward(self, x):
        xp = self.xp
        lo, hi = self.min, self.max
        if self.requires_grad:
            mask = xp.ones(x.shape, dtype=bool)
            if lo is not None:
                mask &= x >= lo
            if hi is not None:
                mask &= x <= hi
            self.mask = mask.astype(x.dtype)
        return xp.clip(x, lo, hi).astype(x.dtype, copy=False)

    def backward(self, gy):
        return gy * _const(self.mask, gy)


def _unary(cls):
    def op(input):
        return cls.apply(input)
    return op


exp = _unary(Exp)
expm1 = _unary(Expm1)
log = _unary(Log)
log1p = _unary(Log1p)
sqrt = _unary(Sqrt)
rsqrt = _unary(Rsqrt)
sin = _unary(Sin)
cos = _unary(Cos)
tanh = _unary(Tanh)
sigmoid = _unary(Sigmoid)
erf = _unary(Erf)
abs = _unary(Abs)
for _name, _fn in [("exp", exp), ("expm1", expm1), ("log", log), ("log1p", log1p),
                   ("sqrt", sqrt), ("rsqrt", rsqrt), ("sin", sin), ("cos", cos),
                   ("tanh", tanh), ("sigmoid", sigmoid), ("erf", erf), ("abs", abs)]:
    _fn.__name__ = _fn.__qualname__ = _name
    _fn.__doc__ = f"Elementwise {_name}, differentiable to any order."


def normal_cdf(input):
    """Φ(x) = (1 + erf(x / √2)) / 2, the standard normal CDF."""
    return (erf(input * (1.0 / np.sqrt(2.0))) + 1.0) * 0.5


class ClampTensor(Function):
    """clamp(x, lo, hi) = min(max(x, lo), hi) with tensor bounds (either may be absent) and
    PyTorch's gradient: to x where lo <= x <= hi (ties included, unlike maximum's even split),
    to lo where x < lo < hi, to hi where x > hi or hi < lo (crossed bounds give hi).  So where
    x < lo = hi no operand gets it, as in PyTorch."""

    def forward(self, x, *bounds):
        xp = self.xp
        lo = bounds[0] if self.has_min else None
        hi = bounds[-1] if self.has_max else None
        out = x if lo is None else xp.maximum(x, lo)
        out = out if hi is None else xp.minimum(out, hi)
        if self.requires_grad:
            take_x, take_bounds = xp.ones(out.shape, dtype=bool), []
            if lo is not None:
                take_x &= x >= lo
                take_bounds.append((x < lo) if hi is None else (x < lo) & (lo < hi))
            if hi is not None:
                take_x &= x <= hi
                take_bounds.append((x > hi) if lo is None else (x > hi) | (hi < lo))
            self.masks = [m.astype(x.dtype) for m in [take_x] + take_bounds]
        return out

    def backward(self, gy):
        return tuple(unbroadcast(gy * _const(self.xp.broadcast_to(m, gy.shape), gy), t.shape)
                     if need else None
                     for t, m, need in zip(self.inputs, self.masks, self.needs_input_grad))


def clamp(input, min=None, max=None):
    """Values limited to [min, max]; the gradient passes where min <= x <= max, the bounds
    included (PyTorch's convention; see :class:`ClampTensor` for tensor bounds)."""
    if min is None and max is None:
        raise ValueError("clamp: give at least one of min and max")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        bounds = [binary_operands(input, b, "clamp")[1] for b in (min, max) if b is not None]
        return ClampTensor.apply(input, *bounds, has_min=min is not None,
                                 has_max=max is not None)
    return Clamp.apply(input, min=min, max=max)


clip = clamp


# ---------------------------------------------------------------- selection
class Where(Function):
    """out = cond ? a : b;  the gradient goes to a where cond holds, to b elsewhere."""

    def forward(self, a, b):
        return self.xp.where(self.cond, a, b)

    def backward(self, gy):
        a, b = self.inputs
        xp = self.xp
        c = xp.broadcast_to(self.cond, gy.shape)
        ga = unbroadcast(gy * _const(c.astype(gy.dtype), gy), a.shape) \
            if self.needs_input_grad[0] else None
        gb = unbroadcast(gy * _const((~c).astype(gy.dtype), gy), b.shape) \
            if self.needs_input_grad[1] else None
        return ga, gb


def where(condition, input, other):
    """``condition ? input : other`` elementwise, with broadcasting."""
    ref = input if isinstance(input, Tensor) else other
    if not isinstance(ref, Tensor):
        raise TypeError("where: input or other must be a Tensor")
    a, b = binary_operands(input, other, "where")
    cond = condition.data if isinstance(condition, Tensor) else ref._xp().asarray(condition)
    if isinstance(condition, Tensor) and condition._device != ref._device:
        raise RuntimeError(f"where: device mismatch: condition on {condition._device}, "
                           f"values on {ref._device}")
    return Where.apply(a, b, cond=cond.astype(bool, copy=False))


class _MaxMin(Function):
    """Elementwise maximum / minimum; on ties the gradient is split evenly (as in PyTorch)."""

    def forward(self, a, b):
        xp = self.xp
        if self.requires_grad:
            pick_a = (a > b) if self.largest else (a < b)
            self.wa = pick_a + 0.5 * (a == b)
        return xp.maximum(a, b) if self.largest else xp.minimum(a, b)

    def backward(self, gy):
        a, b = self.inputs
        wa = self.xp.broadcast_to(self.wa, gy.shape).astype(gy.dtype)
        ga = unbroadcast(gy * _const(wa, gy), a.shape) if self.needs_input_grad[0] else None
        gb = unbroadcast(gy * _const(1.0 - wa, gy), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def maximum(input, other):
    return _MaxMin.apply(*binary_operands(input, other, "maximum"), largest=True)


def minimum(input, other):
    return _MaxMin.apply(*binary_operands(input, other, "minimum"), largest=False)


def masked_fill(input, mask, value):
    """``value`` where ``mask`` is True, ``input`` elsewhere."""
    return where(mask, as_tensor_like(value, input) if not isinstance(value, Tensor) else value,
                 input)


# ---------------------------------------------------------------- piecewise-constant ops
class _Step(Function):
    """y = f(x) for a piecewise-constant f (floor, ceil, round, sign);  dy/dx = 0.

    As in PyTorch the result stays on the graph (it requires grad when x does) and its gradient
    is zeros, at the jumps too, where no derivative exists."""

    def forward(self, x):
        return self.f(self.xp, x)

    def backward(self, gy):
        return _zeros_like(self.inputs[0])


def _zeros_like(t: Tensor) -> Tensor:
    return Tensor._make(t._xp().zeros(t.shape, dtype=t.data.dtype), t._device)


def _step(f, name, what):
    def op(input, *args, **kwargs):
        return _Step.apply(input, f=lambda xp, x: f(xp, x, *args, **kwargs))
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Elementwise {what}; the gradient is zero (PyTorch's convention)."
    return op


def _integral(xp_fn):
    """floor / ceil: integer tensors come back unchanged, in their own dtype (as in PyTorch)."""
    return lambda xp, x: getattr(xp, xp_fn)(x) if x.dtype.kind == "f" else x.copy()


sign = _step(lambda xp, x: xp.sign(x), "sign", "sign (-1, 0 or 1)")
floor = _step(_integral("floor"), "floor", "floor ⌊x⌋")
ceil = _step(_integral("ceil"), "ceil", "ceiling ⌈x⌉")
round = _step(lambda xp, x, decimals=0: xp.round(x, decimals), "round",
              "rounding to ``decimals`` places, halves to even (round(2.5) = 2)")


# ---------------------------------------------------------------- floor division and remainder
class DivFloor(Function):
    """y = ⌊a / b⌋, the quotient that goes with :func:`remainder` (a = b y + a mod b);
    dy/da = dy/db = 0, as PyTorch's ``div(a, b, rounding_mode="floor")``."""

    def forward(self, a, b):
        return self.xp.floor_divide(a, b)

    def backward(self, gy):
        return tuple(_zeros_like(t) if need else None
                     for t, need in zip(self.inputs, self.needs_input_grad))


class FloorDivide(DivFloor):
    """``floor_divide`` / ``//``: the forward of :class:`DivFloor`, and PyTorch's backward,
    which raises -- the result requires grad, so the graph is not cut silently, but PyTorch
    2.13 has no derivative for ``aten::floor_divide``."""

    def backward(self, gy):
        raise RuntimeError("floor_divide (a // b) has no derivative, as in PyTorch ('derivative "
                           "for aten::floor_divide is not implemented'): use div(a, b, "
                           "rounding_mode='floor') for a zero gradient, or detach the operands")


class Remainder(Function):
    """y = a mod b = a - b ⌊a/b⌋, with the sign of b (Python's %);
    dy/da = 1,  dy/db = -⌊a/b⌋, at the jumps a = kb too (PyTorch's formula)."""

    def forward(self, a, b):
        return self.xp.remainder(a, b)

    def backward(self, gy):
        a, b = self.inputs
        ga = unbroadcast(gy, a.shape) if self.needs_input_grad[0] else None
        gb = unbroadcast(-gy * div(a, b, rounding_mode="floor"), b.shape) \
            if self.needs_input_grad[1] else None
        return ga, gb


def floor_divide(input, other):
    """⌊input / other⌋ (``//``).  Its backward raises, as in PyTorch (see :class:`FloorDivide`);
    ``div(input, other, rounding_mode="floor")`` is the same value with a zero gradient."""
    return FloorDivide.apply(*binary_operands(input, other, "floor_divide"))


def remainder(input, other):
    """input mod other with the sign of ``other`` (``%``), differentiable in both operands
    (see :class:`Remainder`).  A number on the left, ``c % x``, is differentiated too:
    d/dx = -⌊c/x⌋, as PyTorch's ``remainder(tensor(c), x)``; PyTorch 2.13 raises for
    ``c % x`` itself, lacking that formula for a Python number on the left."""
    return Remainder.apply(*binary_operands(input, other, "remainder"))


# ---------------------------------------------------------------- no-gradient ops
def _nograd(fn, name):
    def op(input, *args):
        args = [a.data if isinstance(a, Tensor) else a for a in args]
        return Tensor._make(fn(input._xp(), input.data, *args), input._device)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Elementwise {name}; the result takes no part in autograd."
    return op


isfinite = _nograd(lambda xp, x: xp.isfinite(x), "isfinite")
isnan = _nograd(lambda xp, x: xp.isnan(x), "isnan")
logical_not = _nograd(lambda xp, x: xp.logical_not(x), "logical_not")


def _compare(np_op, name):
    def op(input, other):
        if not isinstance(other, Tensor) and not isinstance(input, Tensor):
            raise TypeError(f"{name}: needs a Tensor")
        if isinstance(input, Tensor) and isinstance(other, Tensor) \
                and input._device != other._device:
            raise RuntimeError(f"{name}: device mismatch: {input._device} vs {other._device}")
        ref = input if isinstance(input, Tensor) else other
        a = input.data if isinstance(input, Tensor) else input
        b = other.data if isinstance(other, Tensor) else other
        return Tensor._make(np_op(ref._xp(), a, b), ref._device)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Elementwise {name} comparison: a bool tensor, no gradient."
    return op


eq = _compare(lambda xp, a, b: xp.equal(a, b), "eq")
ne = _compare(lambda xp, a, b: xp.not_equal(a, b), "ne")
lt = _compare(lambda xp, a, b: xp.less(a, b), "lt")
le = _compare(lambda xp, a, b: xp.less_equal(a, b), "le")
gt = _compare(lambda xp, a, b: xp.greater(a, b), "gt")
ge = _compare(lambda xp, a, b: xp.greater_equal(a, b), "ge")
logical_and = _compare(lambda xp, a, b: xp.logical_and(a, b), "logical_and")
logical_or = _compare(lambda xp, a, b: xp.logical_or(a, b), "logical_or")


# ---------------------------------------------------------------- dtype and device moves
class Cast(Function):
    def forward(self, x):
        return x.astype(self.dtype)

    def backward(self, gy):
        return cast(gy, self.inputs[0].dtype)


class ToDevice(Function):
    def forward(self, x):
        self.out_device = self.target
        out = to_device_array(x, self.target)
        return out.copy() if out is x else out     # a new device never aliases the old array

    def backward(self, gy):
        return to_device(gy, self.inputs[0].device)


class Clone(Function):
    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        return gy


def cast(input, dtype):
    dtype = np.dtype(dtype)
    if dtype == input.dtype:
        return input
    if input.requires_grad and dtype.kind == "f":
        return Cast.apply(input, dtype=dtype)
    return Tensor._make(input.data.astype(dtype), input._device)


def to_device(input, device):
    return ToDevice.apply(input, target=Device(device))


def clone(input):
    return Clone.apply(input)
