r"""A convolutional LSTM run over a whole map in one op: the time loop of PixelRNN's Row LSTM
and Diagonal BiLSTM, forward and backward through time side by side.

``conv_lstm_scan(gates, weight, bias, padding)`` takes the input-to-state gates of every step,
already computed (one convolution over the whole map: they do not depend on the state), and
runs the recurrence along the first axis, each step a line of L positions.  The layout is
time-major and channels-last, as ``nn.LSTM``'s (T, N, features) is: a step's gates are then
one contiguous (N L, 4h) matrix, and neither direction of the loop copies a strided array::

    gates  (T, N, L, 4h)     K^is * x for every step t, gate order i, f, g, o (PyTorch's)
    weight (4h, h, K)        K^ss: a 1-D convolution of the previous state along the line,
    bias   (4h,) or None     zero-padded by padding = (left, right), left + right = K - 1
    ->     (T, N, L, h)      the hidden states h_t

.. math::
    z_t = \mathrm{gates}_t + K^{ss} \circledast h_{t-1}, \qquad
    [i, f, g, o] = [\sigma, \sigma, \tanh, \sigma](z_t), \\
    c_t = f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh(c_t),
    \qquad h_{-1} = c_{-1} = 0

Written with nanogen ops this is ~8 recorded ops per step, 770 steps for a 7-layer Diagonal
BiLSTM on MNIST; as one op the loop runs on arrays, channels-last, and the backward is the
classic backpropagation through time, newest step first.  For :math:`dz` (the gradient of the
pre-activations) with :math:`\tau = \tanh c_t`:

.. math::
    dh &= \partial L / \partial h_t + (\text{from step } t+1), \qquad
    dc = dc_{t+1 \to t} + dh \odot o \odot (1 - \tau^2) \\
    dz_i &= dc\, g\, i (1 - i), \quad dz_f = dc\, c_{t-1} f (1 - f), \quad
    dz_g = dc\, i (1 - g^2), \quad dz_o = dh\, \tau\, o (1 - o) \\
    dc_{t \to t-1} &= dc \odot f, \qquad
    dh_{t \to t-1} = (K^{ss})^{\top} \circledast dz, \qquad
    dK^{ss} \mathrel{+}= dz \star h_{t-1}

The convolution is an unfold: the K shifted copies of the padded state side by side,
(N L, K h), times the weight as a (K h, 4h) matrix; its adjoint adds the K slices back.

Gradients of gradients go through the same recurrence built from differentiable ops
(:func:`conv_lstm_scan_reference`), recomputed when a graph is being recorded.
"""
from __future__ import annotations

from ..autograd import Function, is_grad_enabled

__all__ = ["conv_lstm_scan"]


def _padding(padding, K):
    left, right = (int(p) for p in padding)
    if left < 0 or right < 0 or left + right != K - 1:
        raise ValueError(f"conv_lstm_scan: padding (left, right) must be >= 0 and add up to "
                         f"kernel size - 1 = {K - 1} (so each line keeps its length), got "
                         f"{tuple(padding)}")
    return left, right


def _unfold(xp, padded, K, L):
    """(N, L + K - 1, h) -> (N L, K h): row (n, l) holds the K states l .. l + K - 1."""
    N, _, h = padded.shape
    return xp.concatenate([padded[:, k:k + L] for k in range(K)], axis=2).reshape(N * L, K * h)


class ConvLSTMScan(Function):
    """The whole recurrence, forward; the activations, cells and unfolded states are saved.
    The gate arithmetic of each step is the fused LSTM cell kernel
    (:mod:`nanogen.kernels.recurrent`) on the (N L, 4, h) view of the step's gates."""

    def forward(self, gates, weight, bias=None):
        from ..kernels.recurrent import lstm_forward
        from .recurrent import _step_blas
        xp = self.xp
        T, N, L, G4 = gates.shape
        h = G4 // 4
        K = weight.shape[2]
        left = self.padding[0]
        W = weight.transpose(2, 1, 0).reshape(K * h, G4)                   # (K h, 4h)
        z_in = xp.ascontiguousarray(gates).reshape(T, N * L, G4)
        padded = xp.zeros((N, L + K - 1, h), gates.dtype)                 # h_{t-1}, padded
        out = xp.empty((T, N * L, h), gates.dtype)
        cells = xp.empty((T + 1, N * L, h), gates.dtype)                  # c_{t-1}, c_0 = 0
        cells[0] = 0.0
        acts = xp.empty((T, N * L, 4, h), gates.dtype)
        unfolded_all = xp.empty((T, N * L, K * h), gates.dtype)
        with _step_blas(xp):                      # small per-step products: one BLAS thread
            for t in range(T):
                unfolded = unfolded_all[t]
                unfolded[...] = _unfold(xp, padded, K, L)
                z = z_in[t] + unfolded @ W
                if bias is not None:
                    z += bias
                lstm_forward(z.reshape(N * L, 4, h), cells[t], self.device, h=out[t],
                             c_new=cells[t + 1], acts=acts[t])
                padded[:, left:left + L] = out[t].reshape(N, L, h)
        if self.requires_grad:
            self.acts, self.cells, self.unfolded = acts, cells, unfolded_all
        return out.reshape(T, N, L, h)

    def backward(self, gy):
        if is_grad_enabled():            # create_graph: differentiate the reference instead
            from ..autograd import grad
            inputs = list(self.inputs)
            wanted = [t for t, need in zip(inputs, self.needs_input_grad) if need]
            states = conv_lstm_scan_reference(*inputs, padding=self.padding)
            grads = iter(grad(states, wanted, gy, create_graph=True))
            return tuple(next(grads) if need else None for need in self.needs_input_grad)
        from ..kernels.blas import matmul_of
        from ..kernels.recurrent import lstm_grad
        from ..tensor import Tensor
        from .recurrent import _step_blas
        xp, matmul = self.xp, matmul_of(self.xp)
        gates, weight = self.inputs[0], self.inputs[1]
        T, N, L, G4 = gates.shape
        h = G4 // 4
        K = weight.shape[2]
        left = self.padding[0]
        W = weight.data.transpose(2, 1, 0).reshape(K * h, G4)
        d_out = xp.ascontiguousarray(gy.data).reshape(T, N * L, h)
        dz_all = xp.empty((T, N * L, 4, h), gates.dtype)
        dh = xp.empty((N * L, h), gates.dtype)
        dc = xp.zeros((N * L, h), gates.dtype)                            # from step t + 1
        dh_next = xp.zeros((N * L, h), gates.dtype)
        d_padded = xp.zeros((N, L + K - 1, h), gates.dtype)
        with _step_blas(xp):
            for t in range(T - 1, -1, -1):
                xp.add(d_out[t], dh_next, out=dh)
                lstm_grad(self.acts[t], self.cells[t], self.cells[t + 1], dh, dc, self.device,
                          g_gates=dz_all[t], g_c=dc)
                d_unfolded = (dz_all[t].reshape(N * L, G4) @ W.T).reshape(N, L, K, h)
                d_padded[...] = 0.0
                for k in range(K):
                    d_padded[:, k:k + L] += d_unfolded[:, :, k]
                dh_next[...] = d_padded[:, left:left + L].reshape(N * L, h)
        dz_all = dz_all.reshape(T * N * L, G4)
        # dK^ss = sum_t unfold(h_{t-1})^T dz_t: one product over all steps at once, every core
        dW = matmul(self.unfolded.reshape(T * N * L, K * h).T, dz_all)
        grads = [Tensor._make(dz_all.reshape(T, N, L, G4), gates.device),
                 Tensor._make(dW.reshape(K, h, G4).transpose(2, 1, 0), gates.device)]
        if len(self.inputs) > 2:
            grads.append(Tensor._make(dz_all.sum(axis=0), gates.device))
        return tuple(g if need else None for g, need in zip(grads, self.needs_input_grad))


def conv_lstm_scan(gates, weight, bias=None, padding=(0, 0)):
    """The hidden states (T, N, L, h) of a convolutional LSTM run along the first axis of
    ``gates`` (T, N, L, 4h), the state-to-state convolution ``weight`` (4h, h, K) along L with
    ``bias`` (4h,) and zero ``padding`` (left, right); see the module docstring."""
    if gates.ndim != 4 or gates.shape[3] % 4:
        raise ValueError(f"conv_lstm_scan: gates must have shape (T, N, L, 4h), got "
                         f"{tuple(gates.shape)}")
    h = gates.shape[3] // 4
    if weight.ndim != 3 or tuple(weight.shape[:2]) != (4 * h, h):
        raise ValueError(f"conv_lstm_scan: weight must have shape (4h, h, K) = ({4 * h}, {h}, K) "
                         f"for gates of shape {tuple(gates.shape)}, got {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (4 * h,):
        raise ValueError(f"conv_lstm_scan: bias must have shape ({4 * h},), got "
                         f"{tuple(bias.shape)}")
    padding = _padding(padding, weight.shape[2])
    inputs = (gates, weight) if bias is None else (gates, weight, bias)
    return ConvLSTMScan.apply(*inputs, padding=padding)


def conv_lstm_scan_reference(gates, weight, bias=None, padding=(0, 0)):
    """The same recurrence written with differentiable nanogen ops, one step at a time: the
    definition :func:`conv_lstm_scan` is tested against, and its second-order gradient."""
    from ..creation import zeros
    from .conv import conv1d
    from .elementwise import sigmoid, tanh
    from .resample import pad
    from .shape import chunk, stack
    T, N, L, G4 = gates.shape
    state = zeros(N, G4 // 4, L, device=gates.device, dtype=gates.dtype)     # (N, h, L)
    cell = state
    states = []
    for t in range(T):
        z = gates[t].permute(0, 2, 1) + conv1d(pad(state, tuple(padding)), weight, bias)
        i, f, g, o = chunk(z, 4, 1)
        cell = sigmoid(f) * cell + sigmoid(i) * tanh(g)
        state = sigmoid(o) * tanh(cell)
        states.append(state.permute(0, 2, 1))
    return stack(states, 0)
