"""HCFlow's invertible layers (Liang et al., ICCV 2021): forward = encode direction;
each returns ``(out, logdet per sample)`` and has its ``inverse`` beside it."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .invertible import ActNorm, ConvNorm, InvConv1x1, Squeeze, ZeroConv

#: the coupling's bounded log-scale: ``ATAN_K * atan(2 s)`` (the literal 0.318, not 1/pi)
ATAN_K = 0.318


def bounded_logscale(s: torch.Tensor) -> torch.Tensor:
    return ATAN_K * torch.atan(2.0 * s)


class FCN(nn.Module):
    """Coupling network: conv3x3 + ActNorm, ReLU, conv1x1 + ActNorm, ReLU, zero conv."""

    def __init__(self, cin: int, cout: int, hidden: int):
        super().__init__()
        self.conv1 = ConvNorm(cin, hidden, 3)
        self.conv2 = ConvNorm(hidden, hidden, 1)
        self.conv3 = ZeroConv(hidden, cout)
        for c in (self.conv1, self.conv2):           # xavier-normal x 0.1 (official init)
            nn.init.xavier_normal_(c.weight)
            c.weight.data.mul_(0.1)

    def forward(self, x):
        return self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))


class Affine(nn.Module):
    """Affine coupling with a bounded scale: ``z2' = (z2 + shift) * exp(0.318 atan(2 s))``.
    ``z1 = x[:, :C//2]`` (plus the condition, concatenated after it) predicts the
    cross-split ``shift = h[:, 0::2]``, ``s = h[:, 1::2]``."""

    def __init__(self, channels: int, cond_channels: int = 0, hidden: int = 64):
        super().__init__()
        self.c1 = channels // 2
        self.f = FCN(self.c1 + cond_channels, 2 * (channels - self.c1), hidden)

    def _params(self, z1, cond):
        h = self.f(z1 if cond is None else torch.cat([z1, cond], 1))
        return h[:, 0::2], bounded_logscale(h[:, 1::2])

    def forward(self, x, cond=None):
        z1, z2 = x[:, :self.c1], x[:, self.c1:]
        shift, ls = self._params(z1, cond)
        return torch.cat([z1, (z2 + shift) * torch.exp(ls)], 1), ls.sum(dim=(1, 2, 3))

    def inverse(self, y, cond=None):
        z1, z2 = y[:, :self.c1], y[:, self.c1:]
        shift, ls = self._params(z1, cond)
        return torch.cat([z1, z2 * torch.exp(-ls) - shift], 1), -ls.sum(dim=(1, 2, 3))


class DenseNet5(nn.Module):
    """Rescaling coupling network: five dense 3x3 convs (LeakyReLU 0.2), no residual;
    the last conv starts at zero."""

    def __init__(self, cin: int, cout: int, growth: int):
        super().__init__()
        for j in range(1, 5):
            setattr(self, f"conv{j}", nn.Conv2d(cin + growth * (j - 1), growth, 3, padding=1))
        self.conv5 = nn.Conv2d(cin + 4 * growth, cout, 3, padding=1)
        nn.init.zeros_(self.conv5.weight)
        nn.init.zeros_(self.conv5.bias)

    def forward(self, x):
        feats = [x]
        for j in range(1, 5):
            feats.append(F.leaky_relu(getattr(self, f"conv{j}")(torch.cat(feats, 1)), 0.2))
        return self.conv5(torch.cat(feats, 1))


class Affine3Shift(nn.Module):
    """Rescaling main-step coupling.  ``lr_vs_others``: channels 0-2 predict an affine
    transform of the rest; otherwise the rest predict an additive shift of 0-2."""

    def __init__(self, channels: int, lr_vs_others: bool, growth: int):
        super().__init__()
        self.lr_vs_others = lr_vs_others
        n = channels - 3
        self.f = DenseNet5(3, 2 * n, growth) if lr_vs_others else DenseNet5(n, 3, growth)

    def forward(self, x, cond=None):
        lr, rest = x[:, :3], x[:, 3:]
        if self.lr_vs_others:
            h = self.f(lr)
            ls = bounded_logscale(h[:, 1::2])
            return torch.cat([lr, (rest + h[:, 0::2]) * torch.exp(ls)], 1), ls.sum(dim=(1, 2, 3))
        return torch.cat([lr + self.f(rest), rest], 1), x.new_zeros(x.shape[0])

    def inverse(self, y, cond=None):
        lr, rest = y[:, :3], y[:, 3:]
        if self.lr_vs_others:
            h = self.f(lr)
            ls = bounded_logscale(h[:, 1::2])
            return torch.cat([lr, rest * torch.exp(-ls) - h[:, 0::2]], 1), -ls.sum(dim=(1, 2, 3))
        return torch.cat([lr - self.f(rest), rest], 1), y.new_zeros(y.shape[0])


class HCStep(nn.Module):
    """ActNorm -> invertible 1x1 conv (``permute``, optional) -> coupling."""

    def __init__(self, channels: int, affine: nn.Module, permute: bool = True):
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.permute = InvConv1x1(channels) if permute else None
        self.affine = affine

    def forward(self, x, cond=None):
        x, ld = self.actnorm(x)
        if self.permute is not None:
            x, l2 = self.permute(x)
            ld = ld + l2
        x, l3 = self.affine(x, cond)
        return x, ld + l3

    def inverse(self, y, cond=None):
        y, ld = self.affine.inverse(y, cond)
        if self.permute is not None:
            y, l2 = self.permute.inverse(y)
            ld = ld + l2
        y, l3 = self.actnorm.inverse(y)
        return y, ld + l3


#: Space-to-depth by 2 (output channel ``4c + 2 dy + dx``); volume preserving.
SqueezeLayer = Squeeze


def haar_kernels(channels: int) -> torch.Tensor:
    """The ±1 Haar kernels, shape (4C, 1, 2, 2), row ``4c + k`` = sub-band k."""
    k = torch.tensor([[[1., 1.], [1., 1.]], [[1., -1.], [1., -1.]],
                      [[1., 1.], [-1., -1.]], [[1., -1.], [-1., 1.]]])
    return k[:, None].repeat(channels, 1, 1, 1)


class Haar(nn.Module):
    """Haar wavelet downsampling C -> 4C: output channel ``k C + c`` is sub-band k
    (mean, left-right, top-bottom, diagonal; each /4) of input channel c.  The
    kernels are a frozen parameter ``haar_weights`` (as in the official files)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.haar_weights = nn.Parameter(haar_kernels(channels), requires_grad=False)

    def _logdet(self, x_small: torch.Tensor) -> torch.Tensor:
        # each 2x2 block goes through (Hadamard / 4): |det| = 16 / 4^4 = 1/16
        n = self.channels * x_small.shape[2] * x_small.shape[3]
        return x_small.new_full((x_small.shape[0],), -n * math.log(16.0))

    def forward(self, x, cond=None):
        b, c, h, w = x.shape
        out = F.conv2d(x, self.haar_weights.to(x.dtype), stride=2, groups=c) / 4.0
        out = out.reshape(b, c, 4, h // 2, w // 2).transpose(1, 2).reshape(b, 4 * c, h // 2, w // 2)
        return out, self._logdet(out)

    def inverse(self, y, cond=None):
        b, c4, h, w = y.shape
        c = c4 // 4
        y2 = y.reshape(b, 4, c, h, w).transpose(1, 2).reshape(b, c4, h, w)
        x = F.conv_transpose2d(y2, self.haar_weights.to(y.dtype), stride=2, groups=c)
        return x, -self._logdet(y)


class SplitSlot(nn.Module):
    """The parameter-free split position in ``flow.layers`` (the slicing is done by
    :class:`HCFlowNet`, which routes ``a_l`` to the level's conditional flow)."""

    def __init__(self, keep: int):
        super().__init__()
        self.keep = keep
