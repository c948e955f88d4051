r"""PixelRNN (van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural
Networks"): the raster-order chain rule of :mod:`.raster`, with the conditionals computed by
two-dimensional LSTMs.  Two variants, both registered:

* **Row LSTM** (``pixelrnn-row``) runs down the image one *row* at a time;
* **Diagonal BiLSTM** (``pixelrnn-diagonal``) runs across it one *diagonal* at a time, in both
  directions, and sees every earlier pixel.

**The recurrence.**  Each LSTM layer computes its four gates from an *input-to-state*
convolution :math:`K^{is}` of the layer's input map and a *state-to-state* convolution
:math:`K^{ss}` of the previous step's hidden state, then the usual cell update
(PyTorch's gate order i, f, g, o):

.. math::
    [o, f, i, g] = [\sigma, \sigma, \sigma, \tanh](K^{ss} \circledast h_{t-1}
                   + K^{is} \circledast x_t), \qquad
    c_t = f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh(c_t)

:math:`K^{is}` does not depend on the state, so it runs once on the whole map; only
:math:`K^{ss}` is inside the time loop, which runs as one op with its backward through time
beside it (:func:`nanogen.nn.functional.conv_lstm_scan`).

**Row LSTM.**  Step :math:`t` is row :math:`t`.  :math:`K^{is}` is a :math:`1 \times k`
convolution masked to the centre and the pixels left of it (mask B along the row: a
:math:`1 \times (\lfloor k/2 \rfloor + 1)` kernel with :math:`\lfloor k/2 \rfloor` zero columns
of padding on the left), :math:`K^{ss}` a :math:`1 \times k` convolution of the row above's
state.  The context of a pixel is the triangle above it -- it misses the pixels far up-right.

**Diagonal BiLSTM.**  The *skew* shifts row :math:`r` of the input map right by :math:`r`, so
that the diagonals of the image become the columns of an :math:`H \times (W + H - 1)` map::

    a b c            a b c . .        column j of the skew holds the pixels (r, j - r):
    d e f    skew    . d e f .        the left neighbour of (r, c) is in column j - 1, row r,
    g h i    --->    . . g h i        and the pixel above it in column j - 1, row r - 1

Step :math:`t` is column :math:`t` of the skewed map: :math:`K^{is}` is a :math:`1 \times 1`
convolution, :math:`K^{ss}` a :math:`2 \times 1` convolution of the previous column's state
(rows :math:`r - 1` and :math:`r`: the pixel above and the pixel to the left).  *Unskewing* the
output gives each pixel a state that has seen everything up and to the left of it.  A second
LSTM runs right to left (the same computation on the mirrored map), which at :math:`(r, c)` has
seen the pixels up and to the *right* -- and the pixel's own row to the right, which is the
future.  So its output is **shifted down one row** before the two directions are added: at
row :math:`r` it comes from row :math:`r - 1`, and the pixel sees all rows above it in full,
plus its own row to the left.  Without the shift the model would read the future (the causality
test of ``tests/test_autoregressive_mlp_rnn.py`` catches exactly that).

**The network** (the paper's Table 2): a :math:`7 \times 7` mask-A convolution to :math:`2h`
features; LSTM layers of :math:`h` units, each wrapped in a residual connection (its output is
mapped :math:`h \to 2h` by a :math:`1 \times 1` convolution and added to its input); ReLU and
:math:`1 \times 1` layers to the logits (:func:`.raster.logit_head`).  No layer looks down, so
sampling and completion run on the rows drawn so far (:mod:`.raster`).
"""
from __future__ import annotations

from ... import functional as ops
from ... import nn
from ...nn import functional as F
from ...utils.checks import positive_int
from ..registry import ModelSpec, register
from .raster import RasterAutoregressiveModel, logit_head

__all__ = ["PixelRNN", "RowLSTM", "DiagonalLSTM", "DiagonalBiLSTM", "skew", "unskew"]


def skew(x):
    """(N, H, W, C) -> (N, H, W + H - 1, C): row r shifted right by r, zeros elsewhere
    (channels last, so that the skewed map's columns are ready to be the LSTM's steps).

    Pad each row with H zeros and read the flat array back in rows one shorter: row r then
    starts r places later."""
    N, H, W, C = x.shape
    S = W + H - 1
    flat = F.pad(x, (0, 0, 0, H)).reshape(N, H * (W + H), C)
    return flat[:, :H * S].reshape(N, H, S, C)


def unskew(y, width: int):
    """The inverse of :func:`skew`: (N, H, width + H - 1, C) -> (N, H, width, C)."""
    N, H, S, C = y.shape
    flat = F.pad(F.pad(y, (0, 0, 0, 1)).reshape(N, H * (S + 1), C), (0, 0, 0, H))  # rows + 1
    return flat.reshape(N, H, S + 2, C)[:, :, :width]


class RowLSTM(nn.Module):
    r"""One Row LSTM layer: ``channels`` (:math:`2h`) in, ``hidden`` (:math:`h`) out.

    :math:`K^{is}`: the mask-B :math:`1 \times k` convolution of the input map;
    :math:`K^{ss}`: a :math:`1 \times k` convolution of the previous row's state."""

    def __init__(self, channels: int, hidden: int, kernel_size: int = 3):
        super().__init__()
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"RowLSTM: kernel_size must be odd and at least 3, got "
                             f"{kernel_size}")
        self.reach = kernel_size // 2
        self.input_to_state = nn.Conv2d(channels, 4 * hidden, (1, self.reach + 1))
        self.state_to_state = nn.Conv1d(hidden, 4 * hidden, kernel_size, padding=self.reach)

    def forward(self, x):
        gates = self.input_to_state(F.pad(x, (self.reach, 0)))       # centre and left: mask B
        states = F.conv_lstm_scan(gates.permute(2, 0, 3, 1),         # (H, N, W, 4h): by row
                                  self.state_to_state.weight, self.state_to_state.bias,
                                  padding=(self.reach, self.reach))
        return states.permute(1, 3, 0, 2)                             # (N, h, H, W)


class DiagonalLSTM(nn.Module):
    r"""One direction of a Diagonal BiLSTM layer, left to right along the skewed map.

    :math:`K^{is}`: a :math:`1 \times 1` convolution (a linear map of each pixel's
    channels); :math:`K^{ss}`: a :math:`2 \times 1` convolution over the previous column's
    state, rows :math:`r - 1` and :math:`r` (one zero row of padding on top)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.input_to_state = nn.Linear(channels, 4 * hidden)
        self.state_to_state = nn.Conv1d(hidden, 4 * hidden, 2)

    def forward(self, x):
        W = x.shape[3]
        columns = skew(x.permute(0, 2, 3, 1)).permute(2, 0, 1, 3)   # (S, N, H, 2h): by column
        states = F.conv_lstm_scan(self.input_to_state(columns), self.state_to_state.weight,
                                  self.state_to_state.bias, padding=(1, 0))  # rows r - 1, r
        return unskew(states.permute(1, 2, 0, 3), W).permute(0, 3, 1, 2)    # (N, h, H, W)


class DiagonalBiLSTM(nn.Module):
    """Both directions: left to right, plus right to left (the mirrored image) shifted down
    one row so that no pixel sees its own row's future."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.left_to_right = DiagonalLSTM(channels, hidden)
        self.right_to_left = DiagonalLSTM(channels, hidden)

    def forward(self, x):
        forward = self.left_to_right(x)
        backward = ops.flip(self.right_to_left(ops.flip(x, (3,))), (3,))
        shifted = F.pad(backward, (0, 0, 1, 0))[:, :, :-1]           # row r <- row r - 1
        return forward + shifted


class ResidualLSTM(nn.Module):
    """:math:`x + W_{1 \\times 1}\\, \\mathrm{LSTM}(x)`: an LSTM layer with the paper's
    residual connection (h features mapped back to 2h)."""

    def __init__(self, lstm, hidden: int, channels: int):
        super().__init__()
        self.lstm = lstm
        self.up = nn.Conv2d(hidden, channels, 1)

    def forward(self, x):
        return x + self.up(self.lstm(x))


class PixelRNN(RasterAutoregressiveModel):
    """PixelRNN over Bernoulli pixels: ``variant`` "row" (Row LSTM) or "diagonal" (Diagonal
    BiLSTM), ``num_layers`` residual LSTM layers of ``hidden`` units on a :math:`2h`-channel
    stream, a ``first_kernel`` mask-A input layer, ``kernel_size`` the Row LSTM's
    convolutions.  ``num_classes`` is accepted for the common interface and ignored."""

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, variant: str = "diagonal",
                 hidden: int = 16, num_layers: int = 7, first_kernel: int = 7,
                 kernel_size: int = 3, head_channels: int = 32):
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"PixelRNN: image_shape must be (C, H, W), got {image_shape!r}")
        if variant not in ("row", "diagonal"):
            raise ValueError(f"PixelRNN: variant must be 'row' or 'diagonal', got {variant!r}")
        self.image_shape = tuple(int(d) for d in image_shape)
        self.num_classes = num_classes
        self.variant = variant
        hidden = positive_int(hidden, "PixelRNN: hidden")
        channels = 2 * hidden
        C = self.image_shape[0]
        self.input_conv = nn.MaskedConv2d(C, channels, first_kernel, mask_type="A")

        def lstm():
            if variant == "row":
                return RowLSTM(channels, hidden, kernel_size)
            return DiagonalBiLSTM(channels, hidden)

        self.layers = nn.Sequential(*[ResidualLSTM(lstm(), hidden, channels)
                                      for _ in range(positive_int(num_layers,
                                                                  "PixelRNN: num_layers"))])
        self.head = logit_head(channels, head_channels, C)

    def forward(self, x, y=None):
        """Logits (N, C, H, W); pixel (r, c) depends only on the pixels before it."""
        return self.head(self.layers(self.input_conv(x)))


# Default budgets end in under 10 minutes on 2 cores: a training step of batch 64 takes ~1 s
# (Row LSTM) and ~2.5 s (Diagonal BiLSTM), and the final grid of 16 samples (784 passes over
# the rows drawn so far) another 1 and 2.3 minutes, the completions as much again.  The
# results table's runs are 3,000 steps (docs/autoregressive.md).
for _variant, _summary, _steps in [
        ("row", "PixelRNN Row LSTM: row-by-row LSTM with 1x3 convolutions, residual layers", 250),
        ("diagonal", "PixelRNN Diagonal BiLSTM: skewed diagonals, two directions, residual "
                     "layers", 80)]:
    register(ModelSpec(
        name=f"pixelrnn-{_variant}", summary=_summary, build=PixelRNN,
        steps=_steps, batch_size=64, lr=2e-3, lr_schedule="cosine", sample_every=_steps,
        num_samples=16, kwargs=dict(variant=_variant, hidden=16, num_layers=7),
    ))
