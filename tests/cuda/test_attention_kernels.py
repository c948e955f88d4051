"""The numba.cuda attention kernels under the simulator (NUMBA_ENABLE_CUDASIM=1): forward and
backward agree with the CPU kernels on tiny drawn shapes (boolean / additive / causal masks,
rows that see no key), and F.scaled_dot_product_attention on device "cuda" agrees with "cpu",
gradients and second derivatives included."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nanogen as ng
import nanogen.functional as F
from nanogen import nn
from nanogen.kernels import attention as K
from nanogen.testing import assert_close, gradcheck, gradgradcheck


@st.composite
def kernel_inputs(draw):
    """(q, k, v, gout, mask, mask_index, causal, scale) as flattened (B, n, d) float64 arrays."""
    B, L, S = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    E, Ev = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    values = st.floats(-2.0, 2.0, allow_nan=False, allow_subnormal=False)
    q, k, v, g = (draw(hnp.arrays(np.float64, s, elements=values))
                  for s in ((B, L, E), (B, S, E), (B, S, Ev), (B, L, Ev)))
    form = draw(st.sampled_from(["none", "bool", "additive", "causal"]))
    mask = index = None
    if form in ("bool", "additive"):
        shape = (draw(st.sampled_from([1, B])), draw(st.sampled_from([1, L])), S)
        if form == "bool":
            m = draw(hnp.arrays(np.bool_, shape))
        else:
            m = draw(hnp.arrays(np.float64, shape, elements=st.one_of(values,
                                                                       st.just(-np.inf))))
        mask, index = K.compact_mask(m, (B,), L, S, np.dtype(np.float64))
    return q, k, v, g, mask, index, form == "causal", draw(st.floats(0.3, 1.5))


@given(inputs=kernel_inputs(), dtype=st.sampled_from([np.float64, np.float32]))
def test_cuda_kernels_match_the_cpu_kernels(inputs, dtype):
    q, k, v, g, mask, index, causal, scale = inputs
    q, k, v, g = (a.astype(dtype) for a in (q, k, v, g))
    mask = None if mask is None else mask.astype(dtype)
    out_c, lse_c = K.forward_cpu(q, k, v, mask, index, causal, scale)
    out_g, lse_g = K.forward_cuda(q, k, v, mask, index, causal, scale)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    assert out_g.dtype == dtype and lse_g.dtype == dtype
    assert_close(out_g, out_c, **tol, msg="out")
    seen = np.isfinite(lse_c)                  # -inf where a row sees no key
    assert np.array_equal(np.isfinite(lse_g), seen)
    assert_close(lse_g[seen], lse_c[seen], **tol, msg="lse")
    grads_c = K.backward_cpu(q, k, v, out_c, lse_c, g, mask, index, causal, scale)
    grads_g = K.backward_cuda(q, k, v, out_g, lse_g, g, mask, index, causal, scale)
    for name, a, b in zip(("gq", "gk", "gv"), grads_g, grads_c):
        assert a.dtype == dtype
        assert_close(a, b, **tol, msg=name)


def _leaves(device, seed=0, shapes=((2, 1, 3, 2), (2, 2, 4, 2), (1, 2, 4, 3))):
    rng = np.random.default_rng(seed)
    return [ng.tensor(rng.standard_normal(s), device=device, requires_grad=True)
            for s in shapes]


def test_op_on_cuda_matches_cpu_with_masks():
    """Broadcast batch dims, a boolean key-padding mask, an additive mask and is_causal."""
    rng = np.random.default_rng(1)
    keep = rng.random((2, 1, 1, 4)) > 0.3
    keep[1, ..., :] = False                          # batch 1 sees no key at all
    additive = np.where(rng.random((3, 4)) > 0.2, rng.standard_normal((3, 4)), -np.inf)
    g = rng.standard_normal((2, 2, 3, 3))
    for kw in ({"attn_mask": keep}, {"attn_mask": additive}, {"is_causal": True}):
        results = []
        for device in ("cpu", "cuda"):
            q, k, v = _leaves(device)
            args = {n: ng.tensor(a, device=device) if isinstance(a, np.ndarray) else a
                    for n, a in kw.items()}
            out = F.scaled_dot_product_attention(q, k, v, **args)
            assert out.device == device
            out.backward(ng.tensor(g, device=device))
            results.append([out.detach().cpu().numpy()] + [t.grad.cpu().numpy()
                                                           for t in (q, k, v)])
        for a, b in zip(*results):
            assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_gradients_and_second_derivatives_on_cuda():
    leaves = _leaves("cuda", seed=2, shapes=((1, 2, 2), (1, 3, 2), (1, 3, 2)))
    mask = ng.tensor(np.array([[True, False, True], [False, False, True]]), device="cuda")

    def f(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    gradcheck(f, leaves)
    gradgradcheck(f, leaves)


def test_multihead_attention_on_cuda_matches_cpu():
    ng.manual_seed(0)
    mha = nn.MultiheadAttention(4, 2, dtype=ng.float64)
    x = np.random.default_rng(3).standard_normal((2, 3, 4))
    kpm = np.array([[False, False, True], [False, True, True]])
    out_c, _ = mha(ng.tensor(x), ng.tensor(x), ng.tensor(x), key_padding_mask=ng.tensor(kpm),
                   need_weights=False, is_causal=True)
    mha.to("cuda")
    xg = ng.tensor(x, device="cuda")
    out_g, _ = mha(xg, xg, xg, key_padding_mask=ng.tensor(kpm, device="cuda"),
                   need_weights=False, is_causal=True)
    assert out_g.device == "cuda"
    assert_close(out_g.detach().cpu(), out_c.detach().numpy(), rtol=1e-12, atol=1e-14)
