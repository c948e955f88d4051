"""The gradient checker itself (``nanogen.testing``): it must reject a backward wrong by one part
in a million, at any scale of the output, and accept every correct one, including where an
op's numbers cancel (the tolerance rule is in ``nanogen/testing.py``'s docstring)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nanogen as ng
import nanogen.functional as F
from nanogen.autograd import Function
from nanogen.testing import GradcheckError, gradcheck, gradgradcheck

from .strategies import float64_arrays, shapes


class ScaledSquare(Function):
    """y = c·x², with a backward that is off by the factor ``error`` (1 when exact)."""

    def forward(self, x):
        return self.c * x * x

    def backward(self, gy):
        (x,) = self.inputs
        return gy * x * (2.0 * self.c * self.error)


def scaled_square(c, error=1.0):
    return lambda x: ScaledSquare.apply(x, c=c, error=error)


SCALES = st.sampled_from([1e-6, 1e-3, 1.0, 1e3, 1e6])
NONEMPTY = shapes(1, 3, 1, 3)


def leaf(a):
    return ng.tensor(np.array(a, dtype=np.float64), requires_grad=True)


@given(a=NONEMPTY.flatmap(lambda s: float64_arrays(s, 0.5, 2.0)), c=SCALES,
       mode=st.sampled_from(["full", "directional"]))
def test_an_exact_backward_passes_at_every_scale(a, c, mode):
    assert gradcheck(scaled_square(c), [leaf(a)], mode=mode)
    assert gradgradcheck(scaled_square(c), [leaf(a)], mode=mode)


@given(a=NONEMPTY.flatmap(lambda s: float64_arrays(s, 0.5, 2.0)), c=SCALES,
       error=st.sampled_from([1 + 1e-6, 1 - 1e-6, 1 + 1e-4, -1.0]),
       mode=st.sampled_from(["full", "directional"]))
def test_a_backward_off_by_one_part_in_a_million_fails_at_every_scale(a, c, error, mode):
    with pytest.raises(GradcheckError, match="gradient mismatch"):
        gradcheck(scaled_square(c, error), [leaf(a)], mode=mode)
    assert not gradcheck(scaled_square(c, error), [leaf(a)], mode=mode,
                         raise_exception=False)


def test_the_old_tolerances_let_one_part_in_ten_thousand_through():
    # what the tighter rule buys: at atol 1e-5 / rtol 1e-3 this wrong backward passed
    x = leaf([0.7, -1.3, 1.9])
    assert gradcheck(scaled_square(1.0, 1 + 1e-4), [x], atol=1e-5, rtol=1e-3)
    with pytest.raises(GradcheckError):
        gradcheck(scaled_square(1.0, 1 + 1e-4), [x])


def test_a_gradient_that_cancels_to_almost_nothing_is_not_a_false_alarm():
    # layer norm of pairs: x̂ = ±1 whatever x is, so the gradient is an O(eps/var) residue of
    # O(1/σ) terms; the measured |D(h) − D(10h)| covers its rounding noise
    x = leaf([[0.3, 0.9], [-1.2, 0.4], [2.0, 1.1]])
    assert gradcheck(lambda t: F.layer_norm(t, (2,)), [x])


def test_a_message_names_the_input_the_element_and_both_values():
    with pytest.raises(GradcheckError, match=r"input 0 \(shape \(2,\)\) at index \(\d,\): "
                                             r"analytic .* vs numeric"):
        gradcheck(scaled_square(1.0, 1.001), [leaf([0.5, 1.5])])


def test_float32_inputs_are_refused():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda t: t * t, [ng.tensor([1.0, 2.0], requires_grad=True)])
