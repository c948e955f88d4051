"""Normalisation layers: ``BatchNorm1d``, ``BatchNorm2d``, ``InstanceNorm1d``, ``InstanceNorm2d``,
``GroupNorm``, ``LayerNorm`` and StyleGAN's ``AdaIN``.

PyTorch's names, arguments and semantics (biased variance in the normalisation, unbiased in the
running variance).  Running statistics are buffers (``running_mean``, ``running_var``,
``num_batches_tracked``), so they travel with ``to()``, ``state_dict()`` and ``ng.save``; the
functional ops (:mod:`nanogen.functional.normalization`) update them in place in training mode.
``momentum=None`` makes the running statistics a cumulative average: the module passes
momentum = 1 / num_batches_tracked.
"""
from __future__ import annotations

import numbers

from .. import functional as F
from ..autograd import no_grad
from ..creation import empty, ones, tensor, zeros
from ..tensor import int64
from . import init
from .linear import Linear
from .module import Module
from .parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "SyncBatchNorm", "InstanceNorm1d", "InstanceNorm2d",
           "GroupNorm", "LayerNorm", "AdaIN"]


class _NormBase(Module):
    """Weight / bias (``affine``) and running-statistics buffers (``track_running_stats``) of
    the batch and instance norms."""

    _dims: tuple = ()           # the accepted input ranks
    _expects: str = ""          # how the accepted shapes read in an error message

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None,
                 dtype=None):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = Parameter(empty(num_features, device=device, dtype=dtype))
            self.bias = Parameter(empty(num_features, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, device=device, dtype=dtype))
            self.register_buffer("running_var", ones(num_features, device=device, dtype=dtype))
            self.register_buffer("num_batches_tracked", tensor(0, dtype=int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self):
        if self.track_running_stats:
            with no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1)
                self.num_batches_tracked.zero_()

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def _unbatched(self, input) -> bool:
        return False

    def _check_input(self, input):
        name = type(self).__name__
        if input.ndim not in self._dims:
            raise ValueError(f"{name}: expected {self._expects} input, got a {input.ndim}-D "
                             f"input of shape {tuple(input.shape)}")
        c = input.shape[0 if self._unbatched(input) else 1]
        if c != self.num_features:
            raise ValueError(f"{name}: input has {c} channels (shape {tuple(input.shape)}) but "
                             f"the layer was built for num_features={self.num_features}")

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class _BatchNorm(_NormBase):
    """y = (x - E[x]) / sqrt(Var[x] + eps) · γ + β per channel, with the batch statistics in
    training (and running averages updated) and the running statistics in eval."""

    def forward(self, input):
        self._check_input(input)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data[...] += 1
            if self.momentum is None:           # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked.item())
        # eval without running statistics falls back to the batch statistics (as PyTorch)
        use_batch = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(input, self.running_mean if track else None,
                            self.running_var if track else None, self.weight, self.bias,
                            use_batch, momentum, self.eps)


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) inputs."""
    _dims = (2, 3)
    _expects = "a 2-D (N, C) or 3-D (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) inputs."""
    _dims = (4,)
    _expects = "a 4-D (N, C, H, W)"


class SyncBatchNorm(_BatchNorm):
    r"""Batch norm whose training statistics are those of the *global* batch of a data-parallel
    run (:mod:`nanogen.distributed`): each rank sums its per-channel count, :math:`\sum x` and
    then :math:`\sum (x - \mu)^2`, and :func:`~nanogen.distributed.all_reduce` adds the sums
    over the ranks, so

    .. math:: \mu = \frac{\sum_r \sum_{i \in r} x_i}{\sum_r n_r}, \qquad
              \sigma^2 = \frac{\sum_r \sum_{i \in r} (x_i - \mu)^2}{\sum_r n_r}

    are what one process sees on the whole batch.  The sum is differentiable (its backward sums
    the gradients over the ranks too), so the gradients are the global batch's as well.  In one
    process, or in eval mode (running statistics), it is :class:`BatchNorm2d` exactly.  Inputs
    (N, C, *) with at least two dims; ``process_group`` is the world to reduce over (default:
    :func:`nanogen.distributed.world`).  :meth:`convert_sync_batchnorm` swaps every batch norm
    of a model for one, weights and statistics kept (PyTorch's names).
    """

    _dims = (2, 3, 4, 5)
    _expects = "an (N, C, *)"

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, process_group=None,
                 device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device,
                         dtype)
        self.process_group = process_group

    def forward(self, input):
        from .. import distributed
        world = self.process_group or distributed.world()
        if not self.training or world.size == 1:
            return super().forward(input)
        self._check_input(input)
        axes = (0,) + tuple(range(2, input.ndim))
        shape = (1, -1) + (1,) * (input.ndim - 2)
        count = input.numel() // input.shape[1]
        sums = distributed.all_reduce(input.sum(axes), world)
        total = count * world.size                  # every rank holds B / N examples
        mean = sums / total
        centred = input - mean.reshape(shape)
        var = distributed.all_reduce((centred * centred).sum(axes), world) / total
        out = centred / (var + self.eps).sqrt().reshape(shape)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        if self.track_running_stats:
            self.num_batches_tracked.data[...] += 1
            momentum = (1.0 / float(self.num_batches_tracked.item()) if self.momentum is None
                        else self.momentum)
            with no_grad():
                unbiased = var.detach() * (total / max(total - 1, 1))
                self.running_mean.copy_(self.running_mean * (1 - momentum)
                                        + mean.detach() * momentum)
                self.running_var.copy_(self.running_var * (1 - momentum) + unbiased * momentum)
        return out

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """``module`` with every ``BatchNorm1d`` / ``BatchNorm2d`` replaced by a SyncBatchNorm
        holding the same weights and running statistics (returns the new module when
        ``module`` itself is one)."""
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            like = module.weight if module.affine else module.running_mean
            sync = cls(module.num_features, module.eps, module.momentum, module.affine,
                       module.track_running_stats, process_group,
                       device=None if like is None else like.device,
                       dtype=None if like is None else like.dtype)
            sync.load_state_dict(module.state_dict())
            sync.train(module.training)
            return sync
        for name, child in list(module._modules.items()):
            if child is not None:
                converted = cls.convert_sync_batchnorm(child, process_group)
                if converted is not child:
                    setattr(module, name, converted)
        return module


class _InstanceNorm(_NormBase):
    """Per-sample, per-channel normalisation over the spatial positions; unbatched inputs
    (one dim fewer) are accepted, as in PyTorch."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = False, track_running_stats: bool = False, device=None,
                 dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device,
                         dtype)

    def _unbatched(self, input) -> bool:
        return input.ndim == min(self._dims)

    def forward(self, input):
        self._check_input(input)
        unbatched = self._unbatched(input)
        x = input.unsqueeze(0) if unbatched else input
        y = F.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training or not self.track_running_stats,
                            0.0 if self.momentum is None else self.momentum, self.eps)
        return y.squeeze(0) if unbatched else y


class InstanceNorm1d(_InstanceNorm):
    """Instance norm over (N, C, L) inputs (or unbatched (C, L))."""
    _dims = (2, 3)
    _expects = "a 3-D (N, C, L) or 2-D (C, L)"


class InstanceNorm2d(_InstanceNorm):
    """Instance norm over (N, C, H, W) inputs (or unbatched (C, H, W))."""
    _dims = (3, 4)
    _expects = "a 4-D (N, C, H, W) or 3-D (C, H, W)"


class GroupNorm(Module):
    """Normalise each sample over groups of ``num_channels / num_groups`` channels (and all
    positions), then a per-channel affine map (``affine``: γ = 1, β = 0 initially)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, device=None, dtype=None):
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels={num_channels} must be divisible by "
                             f"num_groups={num_groups}")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = Parameter(ones(num_channels, device=device, dtype=dtype))
            self.bias = Parameter(zeros(num_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self):
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, input):
        if input.ndim < 2 or input.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm: expected an (N, {self.num_channels}, *) input, got "
                             f"shape {tuple(input.shape)}")
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` dims; elementwise affine (γ = 1, β = 0
    initially) of that shape, the bias optional."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(ones(*self.normalized_shape, device=device, dtype=dtype))
            if bias:
                self.bias = Parameter(zeros(*self.normalized_shape, device=device, dtype=dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class AdaIN(Module):
    """Adaptive instance normalisation (StyleGAN): a learned affine map (``self.affine``, an
    ``nn.Linear(style_dim, 2·channels)``) turns a style vector w (N, style_dim) into a scale and
    a bias per channel, and ``F.adain`` normalises each (sample, channel) plane of x and applies
    them::

        (scale, bias) = split(A w + a),   y = scale · (x - μ_hw) / sqrt(σ²_hw + eps) + bias

    The scale half of the affine bias starts at 1 (and the bias half at 0), so a fresh layer
    is close to a plain instance norm whatever the style."""

    def __init__(self, style_dim: int, channels: int, eps: float = 1e-5, device=None,
                 dtype=None):
        super().__init__()
        self.style_dim = style_dim
        self.channels = channels
        self.eps = eps
        self.affine = Linear(style_dim, 2 * channels, device=device, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self):
        self.affine.reset_parameters()
        with no_grad():
            self.affine.bias.data[:self.channels] = 1.0
            self.affine.bias.data[self.channels:] = 0.0

    def forward(self, x, w):
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"AdaIN: expected x of shape (N, {self.channels}, H, W), got "
                             f"{tuple(x.shape)}")
        if w.ndim != 2 or w.shape != (x.shape[0], self.style_dim):
            raise ValueError(f"AdaIN: expected a style w of shape ({x.shape[0]}, "
                             f"{self.style_dim}) for x of shape {tuple(x.shape)}, got "
                             f"{tuple(w.shape)}")
        scale, bias = F.chunk(self.affine(w), 2, dim=1)
        return F.adain(x, scale, bias, self.eps)

    def extra_repr(self):
        return f"style_dim={self.style_dim}, channels={self.channels}, eps={self.eps}"
