"""Recurrent layers with PyTorch's constructors, parameters, initialisation and return values:
``RNN`` (tanh / relu), ``LSTM`` and ``GRU`` over whole sequences, and the single-step cells
``RNNCell``, ``LSTMCell`` and ``GRUCell``.

For layer l, direction d and step t (PyTorch's equations; G = H for the RNN, 3H for the GRU,
4H for the LSTM)::

    RNN:   h_t = act(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh)          act = tanh or relu
    LSTM:  (h_t, c_t) = lstm_cell_gates(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh, c_{t-1})
    GRU:   h_t = gru_cell_gates(x_t W_ihᵀ + b_ih, h_{t-1} W_hhᵀ + b_hh, h_{t-1})

(``nanogen.functional.recurrent`` has the gate equations).  Layer l > 0 reads the outputs of
layer l - 1 (both directions concatenated), after dropout in training mode when ``dropout`` > 0;
the reverse direction runs from the last step to the first.

How a layer runs: the input projection x W_ihᵀ + b of all T steps is one matmul per layer and
direction (``F.linear`` on the (T·N, in) input); the time loop is Python, in
:func:`~nanogen.functional.recurrent.recurrence`, one matmul h W_hhᵀ and one fused gate kernel a
step, and its backward (backpropagation through time) runs without a per-step graph.

Parameters (``k`` the layer, ``_reverse`` for the second direction, all initialised
U(-1/√H, 1/√H) as in PyTorch)::

    weight_ih_l{k}  (G, input_size or D·H)    weight_hh_l{k}  (G, H)
    bias_ih_l{k}    (G,)                      bias_hh_l{k}    (G,)

so a PyTorch ``state_dict`` loads unchanged.  Inputs are (T, N, in), (N, T, in) with
``batch_first=True``, or unbatched (T, in); initial states (L·D, N, H), or (L·D, H) for an
unbatched input, zeros when not given.  ``forward`` returns ``(output, h_n)`` --
``(output, (h_n, c_n))`` for the LSTM -- with output (T, N, D·H) (batch_first: (N, T, D·H)).
``proj_size`` (the projected LSTM) is not implemented.
"""
from __future__ import annotations

import math
import numbers
import warnings

from .. import functional as F
from ..creation import empty, zeros
from ..functional.recurrent import recurrence
from ..tensor import Tensor
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def _check_size(owner, name, value, minimum=1):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _nonlinearity_mode(owner, nonlinearity):
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{owner}: unknown nonlinearity {nonlinearity!r}; choose 'tanh' or "
                         f"'relu'")
    return "rnn_" + nonlinearity


def _check_input(owner, input, features, dims):
    """A floating Tensor of one of ``dims`` ranks whose last side is ``features``."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{owner}: input must be a Tensor, got {type(input).__name__}")
    shape = tuple(input.shape)
    if input.ndim not in dims:
        forms = " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"{owner}: expected a {forms} input, got a {input.ndim}-D input of "
                         f"shape {shape}")
    if input.dtype.kind != "f":
        raise TypeError(f"{owner}: input must be floating, got {input.dtype} (use .float())")
    if shape[-1] != features:
        raise ValueError(f"{owner}: input of shape {shape} has {shape[-1]} features; expected "
                         f"input_size={features}")


def _check_state(owner, name, state, expected, input):
    if not isinstance(state, Tensor):
        raise TypeError(f"{owner}: {name} must be a Tensor, got {type(state).__name__}")
    if tuple(state.shape) != tuple(expected):
        raise ValueError(f"{owner}: {name} has shape {tuple(state.shape)}; expected "
                         f"{tuple(expected)} for an input of shape {tuple(input.shape)}")


# ================================================================ sequence layers
class RNNBase(Module):
    """What RNN, LSTM and GRU share: the parameters of every layer and direction, the checks,
    and the loop over layers (each layer's time loop is ``functional.recurrent.recurrence``)."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, proj_size=0, device=None,
                 dtype=None):
        super().__init__()
        owner = type(self).__name__
        self.mode = mode
        self.input_size = _check_size(owner, "input_size", input_size, 0)
        self.hidden_size = _check_size(owner, "hidden_size", hidden_size)
        self.num_layers = _check_size(owner, "num_layers", num_layers)
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) \
                or not 0 <= dropout <= 1:
            raise ValueError(f"{owner}: dropout must be a number in [0, 1] (the probability of "
                             f"an element being zeroed), got {dropout!r}")
        if proj_size:
            raise ValueError(f"{owner}: proj_size={proj_size!r} (the projected LSTM) is not "
                             f"implemented in nanogen; use proj_size=0")
        if dropout > 0 and self.num_layers == 1:
            warnings.warn(f"{owner}: dropout option adds dropout after all but last recurrent "
                          f"layer, so non-zero dropout expects num_layers greater than 1, but "
                          f"got dropout={dropout} and num_layers=1", UserWarning, stacklevel=3)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.proj_size = 0
        G, H, D = _GATES[mode] * self.hidden_size, self.hidden_size, 1 + self.bidirectional
        kw = {"device": device, "dtype": dtype}
        self._flat_weights_names = []
        for layer in range(self.num_layers):
            fan_in = self.input_size if layer == 0 else D * H
            for d in range(D):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                shapes = {"weight_ih": (G, fan_in), "weight_hh": (G, H)}
                if self.bias:
                    shapes.update(bias_ih=(G,), bias_hh=(G,))
                for name, shape in shapes.items():
                    self.register_parameter(name + suffix, Parameter(empty(*shape, **kw)))
                    self._flat_weights_names.append(name + suffix)
        self.reset_parameters()

    def reset_parameters(self):
        """Every weight and bias U(-1/√H, 1/√H), as in PyTorch."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def flatten_parameters(self):
        """A no-op, for scripts written for PyTorch (cuDNN's packed weights have no
        counterpart here)."""

    @property
    def all_weights(self):
        """``[[w_ih, w_hh, b_ih, b_hh], ...]`` per layer and direction, as in PyTorch."""
        names = self._flat_weights_names
        per = 4 if self.bias else 2
        return [[getattr(self, n) for n in names[i:i + per]] for i in range(0, len(names), per)]

    def _layer_weights(self, layer, d):
        """(w_ih, w_hh, b_ih, b_hh) of one layer and direction (biases None without bias)."""
        suffix = f"_l{layer}" + ("_reverse" if d else "")
        names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if self.bias else ())
        weights = [getattr(self, name + suffix) for name in names]
        return tuple(weights + [None] * (4 - len(weights)))

    def _states(self, input, hx, batched, N):
        """(h0, c0 or None), each (L·D, N, H), from ``hx`` (zeros when None), checked."""
        owner = type(self).__name__
        L, H = self.num_layers * (1 + self.bidirectional), self.hidden_size
        expected = (L, N, H) if batched else (L, H)
        lstm = self.mode == "lstm"
        if hx is None:
            h0 = zeros(L, N, H, dtype=input.dtype, device=input.device)
            return h0, (h0 if lstm else None)
        if lstm:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"{owner}: hx must be a tuple (h_0, c_0), got "
                                f"{type(hx).__name__}")
            states = list(hx)
        else:
            states = [hx]
        for name, s in zip(("h_0", "c_0"), states):
            _check_state(owner, name, s, expected, input)
        if not batched:
            states = [s.unsqueeze(1) for s in states]
        return states[0], (states[1] if lstm else None)

    def forward(self, input, hx=None):
        owner = type(self).__name__
        _check_input(owner, input, self.input_size, (2, 3))
        batched = input.ndim == 3
        x = input if batched else input.unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        T, N = x.shape[0], x.shape[1]
        if T == 0:
            raise ValueError(f"{owner}: the sequence is empty (input of shape "
                             f"{tuple(input.shape)}); expected at least one step")
        h0, c0 = self._states(input, hx, batched, N)
        D = 1 + self.bidirectional
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outputs = []
            for d in range(D):
                w_ih, w_hh, b_ih, b_hh = self._layer_weights(layer, d)
                k = layer * D + d
                if self.mode == "gru":          # b_hh stays inside: r multiplies W_hn h + b_hn
                    xproj, b_loop = F.linear(x, w_ih, b_ih), b_hh
                else:                           # one bias b_ih + b_hh for the projection
                    xproj = F.linear(x, w_ih, None if b_ih is None else b_ih + b_hh)
                    b_loop = None
                out, h, c = recurrence(self.mode, xproj, w_hh, h0[k],
                                       None if c0 is None else c0[k], b_loop, reverse=d == 1)
                outputs.append(out)
                h_n.append(h)
                c_n.append(c)
            x = F.cat(outputs, 2) if D > 1 else outputs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        h_n = F.stack(h_n)
        c_n = F.stack(c_n) if self.mode == "lstm" else None
        if not batched:
            x = x.squeeze(1)
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else None
        elif self.batch_first:
            x = x.transpose(0, 1)
        return (x, (h_n, c_n)) if self.mode == "lstm" else (x, h_n)

    def extra_repr(self):
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        return text


class RNN(RNNBase):
    """Elman RNN, h_t = act(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh), act tanh or relu; see
    the module docstring for shapes, parameters and return values."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__(_nonlinearity_mode("RNN", nonlinearity), input_size, hidden_size,
                         num_layers, bias, batch_first, dropout, bidirectional, device=device,
                         dtype=dtype)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """Long short-term memory (Hochreiter & Schmidhuber 1997, with PyTorch's forget-gate-in-
    the-gates layout); ``forward(input, (h_0, c_0)=None) -> (output, (h_n, c_n))``."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype)


class GRU(RNNBase):
    """Gated recurrent unit (Cho et al. 2014); ``forward(input, h_0=None) -> (output, h_n)``."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device=device, dtype=dtype)


# ================================================================ single-step cells
class RNNCellBase(Module):
    """One step of a recurrent layer: ``weight_ih`` (G, input_size), ``weight_hh`` (G, H),
    ``bias_ih`` and ``bias_hh`` (G,), initialised U(-1/√H, 1/√H).  Inputs (N, input_size) or
    unbatched (input_size,); states (N, H) or (H,), zeros when not given."""

    def __init__(self, mode, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__()
        owner = type(self).__name__
        self.mode = mode
        self.input_size = _check_size(owner, "input_size", input_size, 0)
        self.hidden_size = _check_size(owner, "hidden_size", hidden_size)
        self.bias = bool(bias)
        G = _GATES[mode] * self.hidden_size
        kw = {"device": device, "dtype": dtype}
        self.weight_ih = Parameter(empty(G, self.input_size, **kw))
        self.weight_hh = Parameter(empty(G, self.hidden_size, **kw))
        if self.bias:
            self.bias_ih = Parameter(empty(G, **kw))
            self.bias_hh = Parameter(empty(G, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    reset_parameters = RNNBase.reset_parameters

    def _prepare(self, input, hx, states):
        """(x, [state, ...], batched): x and the states as batches, zeros for missing ones."""
        owner = type(self).__name__
        _check_input(owner, input, self.input_size, (1, 2))
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        expected = (x.shape[0], self.hidden_size) if batched else (self.hidden_size,)
        if hx is None:
            zero = zeros(x.shape[0], self.hidden_size, dtype=input.dtype, device=input.device)
            return x, [zero] * len(states), batched
        if len(states) > 1:
            if not isinstance(hx, (tuple, list)) or len(hx) != len(states):
                raise TypeError(f"{owner}: hx must be a tuple ({', '.join(states)}), got "
                                f"{type(hx).__name__}")
            hx = list(hx)
        else:
            hx = [hx]
        for name, s in zip(states, hx):
            _check_state(owner, name, s, expected, input)
        return x, [s if batched else s.unsqueeze(0) for s in hx], batched

    def _projections(self, x, h):
        return (F.linear(x, self.weight_ih, self.bias_ih),
                F.linear(h, self.weight_hh, self.bias_hh))

    def extra_repr(self):
        text = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            text += ", bias=False"
        if self.mode == "rnn_relu":
            text += ", nonlinearity=relu"        # (PyTorch's repr, quotes left out)
        return text


def _unbatch(t, batched):
    return t if batched else t.squeeze(0)


class RNNCell(RNNCellBase):
    """h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh), act tanh or relu."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None,
                 dtype=None):
        super().__init__(_nonlinearity_mode("RNNCell", nonlinearity), input_size, hidden_size,
                         bias, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        x, (h,), batched = self._prepare(input, hx, ("hx",))
        gi, gh = self._projections(x, h)
        act = F.tanh if self.mode == "rnn_tanh" else F.relu
        return _unbatch(act(gi + gh), batched)


class LSTMCell(RNNCellBase):
    """``forward(input, (h, c)=None) -> (h', c')`` by :func:`F.lstm_cell_gates` on
    x W_ihᵀ + b_ih + h W_hhᵀ + b_hh."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("lstm", input_size, hidden_size, bias, device, dtype)

    def forward(self, input, hx=None):
        x, (h, c), batched = self._prepare(input, hx, ("h_0", "c_0"))
        gi, gh = self._projections(x, h)
        h, c = F.lstm_cell_gates(gi + gh, c)
        return _unbatch(h, batched), _unbatch(c, batched)


class GRUCell(RNNCellBase):
    """``forward(input, h=None) -> h'`` by :func:`F.gru_cell_gates` on (x W_ihᵀ + b_ih,
    h W_hhᵀ + b_hh)."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("gru", input_size, hidden_size, bias, device, dtype)

    def forward(self, input, hx=None):
        x, (h,), batched = self._prepare(input, hx, ("hx",))
        gi, gh = self._projections(x, h)
        return _unbatch(F.gru_cell_gates(gi, gh, h), batched)
