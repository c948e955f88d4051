"""The autograd engine: accumulation, retain_graph, autograd.grad, grad modes, higher order."""
import numpy as np
import pytest

import nanogen as ng
from nanogen.testing import assert_close, gradcheck


def leaf(values, dtype=np.float64):
    return ng.tensor(np.asarray(values, dtype=dtype), requires_grad=True)


def test_backward_accumulates_into_grad_across_calls():
    x = leaf([1.0, 2.0, 3.0])
    (x * x).sum().backward()
    (x * 3.0).sum().backward()
    assert_close(x.grad, 2 * np.array([1.0, 2.0, 3.0]) + 3.0)


def test_leaf_grads_own_their_arrays():
    # add's backward hands the same gradient to both inputs; in-place edits of one .grad
    # (as clip_grad_norm_ does) must not change the other
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    (a + b).sum().backward()
    a.grad.data *= 0.5
    assert_close(b.grad, [1.0, 1.0])


def test_second_backward_without_retain_graph_names_the_fix():
    x = leaf([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = leaf([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward()
    assert_close(x.grad, 2 * first)


def test_grad_with_single_input_returns_a_tuple_and_leaves_grad_untouched():
    x = leaf([1.0, 2.0])
    g = ng.autograd.grad((x ** 2).sum(), x)
    assert isinstance(g, tuple) and len(g) == 1
    assert_close(g[0], [2.0, 4.0])
    assert x.grad is None


def test_grad_with_respect_to_a_non_leaf_and_several_inputs():
    x = leaf([1.0, 2.0])
    h = x * 3.0
    y = (h * h).sum()
    gh, gx = ng.autograd.grad(y, [h, x])
    assert_close(gh, 2 * 3.0 * np.array([1.0, 2.0]))
    assert_close(gx, 18.0 * np.array([1.0, 2.0]))


def test_grad_outputs_weight_the_outputs():
    x = leaf([1.0, 2.0])
    (g,) = ng.autograd.grad(x * x, x, grad_outputs=ng.tensor(np.array([10.0, 1.0])))
    assert_close(g, [20.0, 4.0])


def test_unused_input_raises_unless_allow_unused():
    x, z = leaf([1.0]), leaf([2.0])
    y = (x * 2.0).sum()
    with pytest.raises(RuntimeError, match="not used"):
        ng.autograd.grad(y, [x, z], retain_graph=True)
    gx, gz = ng.autograd.grad(y, [x, z], allow_unused=True)
    assert gz is None and gx is not None


def test_grad_prunes_branches_that_do_not_lead_to_the_inputs():
    calls = []

    class Spy(ng.autograd.Function):
        def forward(self, x):
            return x * 1.0

        def backward(self, gy):
            calls.append(1)
            return gy

    w = leaf([1.0, 2.0])
    x = leaf([3.0, 4.0])
    y = (Spy.apply(w) * x).sum()
    ng.autograd.grad(y, x)
    assert calls == []        # the branch through w was never differentiated


def test_nonscalar_backward_needs_a_gradient():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2).backward()
    (x * 2).backward(ng.tensor(np.array([1.0, -1.0])))
    assert_close(x.grad, [2.0, -2.0])


def test_gradient_shape_must_match_output():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"shape \(3,\)"):
        (x * 2).backward(ng.tensor(np.ones(3)))


def test_no_grad_enable_grad_and_set_grad_enabled():
    x = leaf([1.0])
    with ng.no_grad():
        assert not (x * 2).requires_grad
        with ng.enable_grad():
            assert (x * 2).requires_grad
    assert (x * 2).requires_grad

    @ng.no_grad()
    def f(t):
        return t * 2
    assert not f(x).requires_grad
    with ng.set_grad_enabled(False):
        assert not ng.is_grad_enabled()
    assert ng.is_grad_enabled()


def test_higher_order_derivatives_of_a_cube():
    x = leaf([0.5, -2.0])
    (g1,) = ng.autograd.grad((x ** 3).sum(), x, create_graph=True)
    (g2,) = ng.autograd.grad(g1.sum(), x, create_graph=True)
    (g3,) = ng.autograd.grad(g2.sum(), x)
    assert_close(g1, 3 * x.detach().numpy() ** 2)
    assert_close(g2, 6 * x.detach().numpy())
    assert_close(g3, [6.0, 6.0])


def test_create_graph_backward_makes_grad_differentiable():
    x = leaf([1.5])
    (x.sin() * x).sum().backward(create_graph=True)
    assert x.grad.requires_grad
    (g2,) = ng.autograd.grad(x.grad.sum(), x)
    v = 1.5
    assert_close(g2, [2 * np.cos(v) - v * np.sin(v)])


def test_detach_cuts_the_graph_and_shares_memory():
    x = leaf([1.0, 2.0])
    d = (x * 2).detach()
    assert not d.requires_grad and d.grad_fn is None
    y = (x * d).sum()
    y.backward()
    assert_close(x.grad, [2.0, 4.0])


def test_a_deep_chain_does_not_hit_the_recursion_limit():
    x = leaf([1.0])
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.sum().backward()
    assert_close(x.grad, [1.0001 ** 5000], rtol=1e-8)


def test_diamond_graph_sums_both_paths():
    x = leaf([2.0])
    a = x * 3.0
    y = (a * a + a.exp()).sum()
    y.backward()
    assert_close(x.grad, [2 * 3 * 6.0 + 3 * np.exp(6.0)])


def test_custom_function_with_double_backward():
    class Cube(ng.autograd.Function):
        """y = x³, backward 3x² gy built from ops, so it differentiates again."""

        def forward(self, x):
            return x ** 3

        def backward(self, gy):
            (x,) = self.inputs
            return gy * 3.0 * x * x

    x = leaf([1.0, -2.0, 0.5])
    assert gradcheck(lambda t: Cube.apply(t), [x])
    (g,) = ng.autograd.grad(Cube.apply(x).sum(), x, create_graph=True)
    (gg,) = ng.autograd.grad(g.sum(), x)
    assert_close(gg, 6 * x.detach().numpy())


# --------------------------------------------------------------------------- gradient penalty
def _mlp(params, x):
    w1, b1, w2, b2 = params
    return ng.tanh(x @ w1 + b1) @ w2 + b2


def _penalty(params, x):
    """WGAN-GP's term: mean over the batch of (‖∇_x f(x)‖₂ - 1)²."""
    out = _mlp(params, x)
    (gx,) = ng.autograd.grad(out.sum(), x, create_graph=True)
    norms = (gx * gx).sum(1).sqrt()
    return ((norms - 1.0) ** 2).mean()


def _penalty_numpy(params, x):
    """The same penalty with the input-gradient derived by hand:
    ∇_x f = W1 ((1 - h²) ⊙ w2),  h = tanh(x W1 + b1)."""
    w1, b1, w2, _ = params
    h = np.tanh(x @ w1 + b1)
    gx = ((1 - h * h) * w2[:, 0]) @ w1.T
    return np.mean((np.sqrt((gx * gx).sum(1)) - 1.0) ** 2)


def test_gradient_penalty_parameter_gradients_match_an_independent_computation():
    rng = np.random.default_rng(0)
    shapes = [(3, 8), (8,), (8, 1), (1,)]
    values = [rng.standard_normal(s) * 0.7 for s in shapes]
    x = ng.tensor(rng.standard_normal((5, 3)), requires_grad=True)
    params = [ng.tensor(v, requires_grad=True) for v in values]
    loss = _penalty(params, x) + _mlp(params, x).mean()
    loss.backward()
    # independent: central differences of the hand-derived NumPy penalty in float64
    eps = 1e-6
    xv = x.detach().numpy()

    def total(vs):
        return _penalty_numpy(vs, xv) + (np.tanh(xv @ vs[0] + vs[1]) @ vs[2] + vs[3]).mean()

    for k, p in enumerate(params):
        num = np.zeros_like(values[k])
        for j in range(num.size):
            for sign in (1, -1):
                vs = [u.copy() for u in values]
                vs[k].reshape(-1)[j] += sign * eps
                num.reshape(-1)[j] += sign * total(vs) / (2 * eps)
        assert_close(p.grad, num, rtol=1e-5, atol=1e-7)


def test_gradient_penalty_training_steps_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    shapes = [(2, 16), (16,), (16, 1), (1,)]
    values = [rng.standard_normal(s) * 0.5 for s in shapes]
    ours = [ng.tensor(v, requires_grad=True) for v in values]
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    for step in range(5):
        xb = rng.standard_normal((8, 2))
        x1 = ng.tensor(xb, requires_grad=True)
        x2 = torch.tensor(xb, requires_grad=True)
        l1 = _penalty(ours, x1) * 10.0 - _mlp(ours, x1).mean()
        out2 = torch.tanh(x2 @ theirs[0] + theirs[1]) @ theirs[2] + theirs[3]
        (g2,) = torch.autograd.grad(out2.sum(), x2, create_graph=True)
        l2 = ((g2.pow(2).sum(1).sqrt() - 1) ** 2).mean() * 10.0 - out2.mean()
        l1.backward()
        l2.backward()
        for a, b in zip(ours, theirs):
            assert_close(a.grad, b.grad.numpy(), rtol=1e-9, atol=1e-12)
            a.data -= 0.05 * a.grad.data
            a.grad = None
            with torch.no_grad():
                b -= 0.05 * b.grad
            b.grad = None


def test_adopted_gradients_are_never_aliased():
    # a leaf may adopt a fresh gradient array without copying; it must never share it with a
    # caller's tensor or with another leaf, and later contributions must not corrupt the rest
    # of the backward pass that still reads it
    g_user = ng.tensor(np.array([1.0, 2.0]))
    x = leaf([1.0, 2.0])
    (x * 1.0).backward(g_user)
    x.grad.data *= 10
    assert g_user.tolist() == [1.0, 2.0]
    y = leaf([3.0, 4.0])
    h = y * 2.0
    (h + y + y).sum().backward()        # gy goes to y twice and through h once
    assert_close(y.grad, [4.0, 4.0])


def test_grad_outputs_that_require_grad_stay_on_the_graph():
    x = leaf([1.0, 2.0])
    u = leaf([3.0, 5.0])
    (g,) = ng.autograd.grad(x * x, x, grad_outputs=u, create_graph=True)   # g = 2 x u
    (gu,) = ng.autograd.grad(g.sum(), u)
    assert_close(gu, [2.0, 4.0])


# ---------------------------------------------------------------- pieces of one tensor
# Without create_graph the engine lets the pieces of a non-leaf tensor (indexing, unbind, split)
# add their gradients into one buffer (Function.backward_into), and adds later contributions
# in place into arrays it allocated itself.  These tests pin the sums and the ownership rules.
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from .strategies import examples  # noqa: E402


@st.composite
def _pieces(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    pieces = []
    for _ in range(draw(st.integers(1, 5))):
        # basic pieces (ints and slices), or one integer array among slices: NumPy and PyTorch
        # place the dims of ints mixed with arrays differently, which is not under test here
        advanced_axis = draw(st.one_of(st.none(), st.integers(0, len(shape) - 1)))
        idx = []
        for axis, n in enumerate(shape):
            kind = draw(st.sampled_from(["slice", "int", "all"]))
            if axis == advanced_axis:
                idx.append(np.array(draw(st.lists(st.integers(-n, n - 1), min_size=1,
                                                  max_size=4))))    # repeats accumulate
            elif kind == "int" and advanced_axis is None:
                idx.append(draw(st.integers(-n, n - 1)))
            elif kind == "slice":
                a, b = sorted(draw(st.lists(st.integers(0, n), min_size=2, max_size=2)))
                idx.append(slice(a, b, draw(st.integers(1, 2))))
            else:
                idx.append(slice(None))
        pieces.append(tuple(idx))
    use_whole = draw(st.booleans())
    return shape, pieces, use_whole, draw(st.integers(0, 2 ** 16))


@given(_pieces())
@examples(4)
def test_pieces_of_a_non_leaf_tensor_sum_their_gradients(problem):
    shape, pieces, use_whole, seed = problem
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(shape)
    x = leaf(x0)
    y = x * 1.5                                    # not a leaf: its pieces share one buffer
    weights = [rng.standard_normal(np.shape(x0[idx])) for idx in pieces]
    loss = sum((y[idx] * ng.tensor(w)).sum() for idx, w in zip(pieces, weights))
    if use_whole:                                  # a contribution that is not a piece
        loss = loss + (y * y).sum()
    loss.backward()
    expected = np.zeros(shape)
    for idx, w in zip(pieces, weights):
        np.add.at(expected, idx, w)
    if use_whole:
        expected += 2 * 1.5 * x0
    assert_close(x.grad, 1.5 * expected, rtol=1e-12, atol=1e-12)


def test_unbind_pieces_fill_one_buffer_and_unused_pieces_stay_zero():
    x = leaf(np.arange(12.0).reshape(3, 4))
    q, k, v = x * 2.0                              # Tensor.__iter__ is unbind(0)
    (q * 3.0 + v).sum().backward()                 # k is never used
    assert_close(x.grad, np.array([[6.0] * 4, [0.0] * 4, [2.0] * 4]))


def test_a_gradient_handed_to_two_inputs_is_not_accumulated_in_place():
    # add's backward gives the same array to both of its inputs; a later contribution to one
    # of them must not reach the other through that shared array
    x = leaf([1.0, 2.0])
    a, b = x * 1.0, x * 1.0
    s = a + b
    ((s * 1.0 + a * 5.0).sum() + b[0] * 7.0).backward()
    assert_close(x.grad, [1 + 5 + 1 + 7, 1 + 5 + 1])


def test_autograd_grad_of_an_intermediate_through_its_pieces():
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    y = x * x
    first, second = y
    g_y, g_x = ng.autograd.grad((first * 2.0).sum() + (second ** 2).sum(), [y, x])
    assert_close(g_y, [[2.0, 2.0], [18.0, 32.0]])
    assert_close(g_x, 2 * np.array([[1.0, 2.0], [3.0, 4.0]]) * g_y.numpy())


def test_pieces_under_create_graph_keep_second_derivatives():
    x = leaf([1.0, 2.0, 3.0])
    y = x * x
    (g,) = ng.autograd.grad((y[0] * y[2] + y[1:].sum()), x, create_graph=True)
    # g = [2 x0 y2, 2 x1, 2 x2 (1 + y0)]; d(sum g)/dx = [2 y2, 2, 2 (1 + y0)] + cross terms
    (h,) = ng.autograd.grad(g.sum(), x)
    x0, x1, x2 = 1.0, 2.0, 3.0
    assert_close(h, [2 * x2 ** 2 + 4 * x0 * x2, 2.0, 2 * (1 + x0 ** 2) + 4 * x0 * x2])


def test_embedding_gradient_sums_repeated_and_negative_rows_like_add_at():
    rng = np.random.default_rng(0)
    table = leaf(rng.standard_normal((7, 5)), dtype=np.float32)
    ids = np.array([[3, -1, 3, 0], [6, 3, 2, -7]])
    upstream = rng.standard_normal((2, 4, 5)).astype(np.float32)
    (table[ng.tensor(ids)] * ng.tensor(upstream)).sum().backward()
    expected = np.zeros((7, 5), dtype=np.float32)
    np.add.at(expected, ids, upstream)
    assert np.array_equal(table.grad.numpy(), expected)     # summed in add.at's order


@given(st.integers(1, 6), st.lists(st.integers(1, 3), max_size=2), st.integers(2, 40),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2 ** 16))
@examples(2.5)
def test_scatter_add_rows_kernel_equals_add_at(n, trailing, count, dtype, seed):
    from nanogen.kernels.scatter import scatter_add_rows_cpu, scatter_add_rows_reference
    rng = np.random.default_rng(seed)
    rows = rng.integers(-n, n, size=count)
    values = rng.standard_normal((count, *trailing)).astype(dtype)
    start = rng.standard_normal((n, *trailing)).astype(dtype)
    ours, expected = start.copy(), start.copy()
    scatter_add_rows_cpu(ours, rows, values)
    scatter_add_rows_reference(expected, rows, values)
    assert np.array_equal(ours, expected)


def test_pieces_with_retain_graph_give_the_same_gradient_twice():
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    y = x * 2.0
    top, bottom = y
    loss = (top * 3.0).sum() + (bottom * bottom).sum() + y.sum()
    loss.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    loss.backward()
    assert_close(first, [[8.0, 8.0], [2 + 8 * 3.0, 2 + 8 * 4.0]])
    assert_close(x.grad, 2 * first)
