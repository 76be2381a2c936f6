"""SRFlow's invertible layers and the (non-invertible) networks inside their couplings.

Every layer has ``forward(x, cond) -> (y, logdet)`` (image -> latent direction)
and ``inverse(y, cond) -> (x, logdet)`` written side by side.  ``logdet`` is the
per-sample log |det dy/dx| (shape ``(N,)``); ``inverse`` returns its negation.
Parameter names follow the official SRFlow checkpoints so that their state dicts
load without renaming.

Conditional layers accept either a raw conditioning tensor or a precomputed
:class:`CondCache` entry (see :meth:`CondAffine.precompute`), which is how a
model reuses the work that depends only on the LR image.  At inference the coupling
networks run with folded parameters (:mod:`flow.layers.folded`).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .folded import fold, rest_folded


def _hw(x: torch.Tensor) -> int:
    return x.shape[2] * x.shape[3]


# ----------------------------------------------------------------------------
# building blocks of the coupling networks (not invertible themselves)
# ----------------------------------------------------------------------------

class ActNorm(nn.Module):
    """Per-channel affine ``y = (x + bias) * exp(logs)`` with data-dependent init.

    The first forward pass in train mode sets ``bias = -mean`` and
    ``logs = log(1 / (std + 1e-6))`` unless the layer was loaded from a state dict
    (or its bias is already non-zero), as in the official implementation.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("inited", torch.tensor(False), persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # only when this layer's weights were actually loaded (a partial load, e.g.
        # RRDB-only with strict=False, must keep the data-dependent init)
        if prefix + "bias" in state_dict or prefix + "logs" in state_dict:
            self.inited.fill_(True)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        if bool(self.inited) or bool((self.bias != 0).any()):
            self.inited.fill_(True)
            return
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True).sqrt()
        self.bias.copy_(-mean)
        self.logs.copy_(torch.log(1.0 / (std + 1e-6)))
        self.inited.fill_(True)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not bool(self.inited):
            self.initialize(x)
        return (x + self.bias) * torch.exp(self.logs)

    def forward(self, x, cond=None):
        y = self.normalize(x)
        return y, self.logs.sum() * _hw(x) * x.new_ones(x.shape[0])

    def inverse(self, y, cond=None):
        x = y * torch.exp(-self.logs) - self.bias
        return x, -self.logs.sum() * _hw(y) * y.new_ones(y.shape[0])


class ConvNorm(nn.Module):
    """``Conv2d`` with "same" padding: no bias + ActNorm (SRFlow) or bias (SRFlow-DA)."""

    def __init__(self, cin: int, cout: int, k: int, actnorm: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k) * 0.05)
        self.pad = (k - 1) // 2
        if actnorm:
            self.actnorm = ActNorm(cout)
            self.bias = None
        else:
            self.actnorm = None
            self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x):
        y = F.conv2d(x, self.weight, self.bias, padding=self.pad)
        return self.actnorm.normalize(y) if self.actnorm is not None else y


class ZeroConv(nn.Module):
    """3x3 conv with bias, output scaled by ``exp(3 * logs)``; zero-initialised."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cout, cin, 3, 3))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.logs = nn.Parameter(torch.zeros(cout, 1, 1))

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, padding=1) * torch.exp(3.0 * self.logs)


class SubNet:
    """The coupling network ``cin -> cout`` (a view over modules owned by the layer).

    The modules are registered on the owning layer under the official names:
    ``<name>.{0,2,4,...}`` for the ``srflow``/``da`` styles, and
    ``<name>1`` (head), ``<name>2`` (hidden stack), ``<name>3`` (zero conv) for
    ``da-r``/``da-d``.  The first conv's linear part is exposed separately so that
    its conditioning share can be precomputed.
    """

    def __init__(self, owner: nn.Module, name: str, cin, cout, style="srflow", hidden=64,
                 n_hidden=1, k_hidden=1):
        self.style = style
        an = style == "srflow"
        if style in ("srflow", "da"):
            seq = nn.ModuleList([ConvNorm(cin, hidden, 3, an), nn.ReLU()])
            for _ in range(n_hidden):
                seq.extend([ConvNorm(hidden, hidden, k_hidden, an), nn.ReLU()])
            seq.append(ZeroConv(hidden, cout))
            owner.add_module(name, seq)
            self.head, self.body, self.tail = seq[0], list(seq[1:-1]), seq[-1]
            return
        head = nn.ModuleList([ConvNorm(cin, hidden, 3, False), nn.ReLU()])
        if style == "da-r":      # one residual connection around the hidden stack
            body = nn.ModuleList()
            for _ in range(n_hidden):
                body.extend([ConvNorm(hidden, hidden, k_hidden, False), nn.ReLU()])
        elif style == "da-d":    # n_hidden/2 residual blocks of two convs
            body = nn.ModuleList(
                nn.ModuleList([ConvNorm(hidden, hidden, k_hidden, False), nn.ReLU(),
                               ConvNorm(hidden, hidden, k_hidden, False), nn.ReLU()])
                for _ in range(n_hidden // 2))
        else:
            raise ValueError(f"unknown coupling style {style!r}")
        tail = nn.ModuleList([ZeroConv(hidden, cout)])
        owner.add_module(name + "1", head)
        owner.add_module(name + "2", body)
        owner.add_module(name + "3", tail)
        self.head, self.body, self.tail = head[0], body, tail[0]

    def first_linear(self, x, channels=None):
        """The first conv's linear part (no bias/actnorm), on input ``channels`` only."""
        w = self.head.weight if channels is None else self.head.weight[:, channels]
        return F.conv2d(x, w, padding=self.head.pad)

    def rest(self, h):
        """Everything after the first conv's linear part ``h``."""
        head = self.head
        h = head.actnorm.normalize(h) if head.actnorm is not None else h + head.bias.view(1, -1, 1, 1)
        h = F.relu(h)
        if self.style in ("srflow", "da"):
            for m in self.body[1:]:          # body[0] is the head's ReLU
                h = m(h)
        elif self.style == "da-r":
            x = h
            for m in self.body:
                x = m(x)
            h = x + h
        else:
            for blk in self.body:
                x = h
                for m in blk:
                    x = m(x)
                h = x + h
        return self.tail(h)

    def __call__(self, x):
        return self.rest(self.first_linear(x))


# ----------------------------------------------------------------------------
# invertible layers
# ----------------------------------------------------------------------------

class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution.  Plain weight (official) or LU-decomposed."""

    def __init__(self, channels: int, lu: bool = False):
        super().__init__()
        q = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))[0]
        self.lu = lu
        if not lu:
            self.weight = nn.Parameter(q.float())
        else:
            P, Lw, U = torch.linalg.lu(q)
            s = torch.diagonal(U)
            self.register_buffer("perm", P.float())
            self.register_buffer("sign_s", torch.sign(s).float())
            self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
            self.lower = nn.Parameter(Lw.float())
            self.upper = nn.Parameter(torch.triu(U, 1).float())
            self.log_s = nn.Parameter(torch.log(torch.abs(s)).float())
        self._inv_cache = None

    def matrix(self) -> torch.Tensor:
        if not self.lu:
            return self.weight
        eye = torch.eye(self.lower.shape[0], device=self.lower.device, dtype=self.lower.dtype)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def logabsdet(self) -> torch.Tensor:
        if self.lu:
            return self.log_s.sum()
        w = self.weight
        if torch.is_grad_enabled():
            return torch.linalg.slogdet(w)[1]
        # no autograd: reuse the value while the weight is unchanged (decoding calls
        # this once per step and sample)
        key = (w.data_ptr(), None if w.is_inference() else w._version, w.device, w.dtype)
        hit = self.__dict__.get("_logdet_cache")
        if hit is None or hit[0] != key:
            hit = (key, torch.linalg.slogdet(w.detach())[1])
            self.__dict__["_logdet_cache"] = hit
        return hit[1]

    def inverse_matrix(self) -> torch.Tensor:
        w = self.matrix()
        if torch.is_grad_enabled() and w.requires_grad:
            return torch.inverse(w.double()).to(w.dtype)
        # (inference tensors, e.g. a model built under inference_mode, have no version counter)
        key = (w.data_ptr(), w._version if not (self.lu or w.is_inference()) else None, w.device)
        if self.lu or self._inv_cache is None or self._inv_cache[0] != key:
            inv = torch.inverse(w.detach().double()).to(w.dtype)
            self._inv_cache = (key, inv)
        return self._inv_cache[1]

    def forward(self, x, cond=None):
        w = self.matrix()
        y = F.conv2d(x, w[:, :, None, None])
        return y, self.logabsdet() * _hw(x) * x.new_ones(x.shape[0])

    def inverse(self, y, cond=None):
        x = F.conv2d(y, self.inverse_matrix()[:, :, None, None])
        return x, -self.logabsdet() * _hw(y) * y.new_ones(y.shape[0])


def squeeze2d(x: torch.Tensor, f: int) -> torch.Tensor:
    """Space-to-depth with output channel ``c*f*f + f*dy + dx`` (official order)."""
    b, c, h, w = x.shape
    if h % f or w % f:
        raise ValueError(f"squeeze by {f} needs H, W divisible by {f}, got {h}x{w}")
    x = x.view(b, c, h // f, f, w // f, f).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * f * f, h // f, w // f)


def unsqueeze2d(x: torch.Tensor, f: int) -> torch.Tensor:
    b, c, h, w = x.shape
    x = x.view(b, c // (f * f), f, f, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // (f * f), h * f, w * f)


class Squeeze(nn.Module):
    """Squeeze by ``factor``; volume preserving (logdet 0)."""

    def __init__(self, factor: int = 2):
        super().__init__()
        self.factor = factor

    def forward(self, x, cond=None):
        return squeeze2d(x, self.factor), x.new_zeros(x.shape[0])

    def inverse(self, y, cond=None):
        return unsqueeze2d(y, self.factor), y.new_zeros(y.shape[0])


class CondCache:
    """LR-only quantities of one conditional step, computed once per LR image.

    ``shift_ft``/``scale_ft``/``logdet_ft``: the affine injector's output;
    ``h0_ft``: the conditioning share of the coupling network's first conv.
    """

    __slots__ = ("shift_ft", "scale_ft", "logdet_ft", "h0_ft")

    def __init__(self, shift_ft, scale_ft, logdet_ft, h0_ft):
        self.shift_ft, self.scale_ft, self.logdet_ft, self.h0_ft = shift_ft, scale_ft, logdet_ft, h0_ft

    def crop(self, y0, y1, x0, x1) -> "CondCache":
        return CondCache(self.shift_ft[..., y0:y1, x0:x1], self.scale_ft[..., y0:y1, x0:x1],
                         None, self.h0_ft[..., y0:y1, x0:x1])


def _cross(h):
    """Official 'cross' split: even channels -> shift/mean, odd -> scale/logs."""
    return h[:, 0::2], h[:, 1::2]


class CondAffine(nn.Module):
    """Affine injector + conditional affine coupling (``CondAffineSeparatedAndCond``).

    forward: ``z = (z + shift_ft) * scale_ft`` with ``(shift_ft, scale_ft)`` from the
    condition alone, then ``z2 = (z2 + shift) * scale`` with ``(shift, scale)`` from
    ``[z1, cond]``.  Scales are ``sigmoid(h + 2) + eps``.
    """

    def __init__(self, channels, cond_channels, style="srflow", hidden=64, n_hidden=1,
                 k_hidden=1, eps=1e-4):
        super().__init__()
        self.c_nn = channels // 2
        self.c_co = channels - self.c_nn
        self.eps = eps
        self.cond_channels = cond_channels
        self.fAffine_net = SubNet(self, "fAffine", self.c_nn + cond_channels, 2 * self.c_co, style,
                                  hidden, n_hidden, k_hidden)
        self.fFeatures_net = SubNet(self, "fFeatures", cond_channels, 2 * channels, style,
                                    hidden, n_hidden, k_hidden)

    def _scale(self, h):
        return torch.sigmoid(h + 2.0) + self.eps

    def precompute(self, ft: torch.Tensor) -> CondCache:
        return self.cache_from_linear(self.fFeatures_net.first_linear(ft),
                                      self.fAffine_net.first_linear(ft, slice(self.c_nn, None)))

    def first_conv_weights(self) -> torch.Tensor:
        """The two 3x3 kernels applied to the condition, stacked on the output axis:
        ``[fFeatures head (hidden, cond), fAffine head's conditioning share (hidden, cond)]``.
        Several steps' stacks concatenate into one convolution (see ``FlowNet.build_caches``)."""
        return torch.cat([self.fFeatures_net.head.weight,
                          self.fAffine_net.head.weight[:, self.c_nn:]], dim=0)

    def cache_from_linear(self, h_ff: torch.Tensor, h0_ft: torch.Tensor) -> CondCache:
        """The :class:`CondCache` given the first convs' linear outputs on the condition
        (``h_ff``: fFeatures head, ``h0_ft``: the fAffine head's conditioning share).
        In eval mode without autograd ``h_ff`` is overwritten (folded inference path)."""
        fast = not (torch.is_grad_enabled() or self.training)   # train mode: ActNorm data init
        f = fold(self.fFeatures_net, None, 2.0) if fast else None
        if f is None:
            shift_ft, raw = _cross(self.fFeatures_net.rest(h_ff))
            scale_ft = self._scale(raw)
        else:       # exactly the ActNorm (or bias) and ReLU of rest(), in place
            if f["norm"] is not None:
                h_ff.add_(f["norm"][0]).mul_(f["norm"][1])
            else:
                h_ff.add_(f["bias"])
            shift_ft, raw = _cross(rest_folded(h_ff.relu_(), f))
            scale_ft = torch.sigmoid(raw).add_(self.eps)
        # compact NCHW copies: a strided view would keep the whole 2C-channel output alive
        shift_ft, scale_ft = shift_ft.contiguous(), scale_ft.contiguous()
        logdet_ft = torch.log(scale_ft).sum(dim=(1, 2, 3))
        return CondCache(shift_ft, scale_ft, logdet_ft, h0_ft)

    def _features(self, cond):
        if isinstance(cond, CondCache):
            ld = cond.logdet_ft if cond.logdet_ft is not None else torch.log(cond.scale_ft).sum(dim=(1, 2, 3))
            return cond.shift_ft, cond.scale_ft, ld
        shift, raw = _cross(self.fFeatures_net(cond))
        scale = self._scale(raw)
        return shift, scale, torch.log(scale).sum(dim=(1, 2, 3))

    def _coupling(self, z1, cond):
        sub = self.fAffine_net
        if isinstance(cond, CondCache) and not (torch.is_grad_enabled() or self.training):
            f = fold(sub, slice(0, self.c_nn), 2.0)
            if f is not None:
                return self._coupling_folded(z1, cond.h0_ft, f)
        if isinstance(cond, CondCache):
            h = sub.first_linear(z1, slice(0, self.c_nn)) + cond.h0_ft
        else:
            if cond.shape[0] != z1.shape[0]:   # one LR condition, n samples (as the cached path)
                cond = cond.expand(z1.shape[0], -1, -1, -1)
            h = sub.first_linear(torch.cat([z1, cond], dim=1))
        shift, raw = _cross(sub.rest(h))
        return shift, self._scale(raw)

    def _coupling_folded(self, z1, h0_ft, f):
        """:meth:`_coupling` for a cached condition in eval mode without autograd: ActNorms, the zero
        conv's scale and the sigmoid's +2 folded into the convs, in-place activations, and
        the 3x3 head conv in channels-last layout (much faster with oneDNN for few input
        channels)."""
        w, b, pad = f["head"]
        h = F.conv2d(z1.contiguous(memory_format=torch.channels_last), w, b, padding=pad)
        if f["scale"] is not None:
            h.addcmul_(h0_ft, f["scale"])
        else:
            h.add_(h0_ft)
        shift, raw = _cross(rest_folded(h.relu_(), f))
        return shift, torch.sigmoid(raw).add_(self.eps)

    def forward(self, x, cond):
        shift_ft, scale_ft, ld_ft = self._features(cond)
        z = (x + shift_ft) * scale_ft
        z1, z2 = z[:, :self.c_nn], z[:, self.c_nn:]
        shift, scale = self._coupling(z1, cond)
        z2 = (z2 + shift) * scale
        logdet = ld_ft.expand(x.shape[0]) + torch.log(scale).sum(dim=(1, 2, 3))
        return torch.cat([z1, z2], dim=1), logdet

    def inverse(self, y, cond):
        z1, z2 = y[:, :self.c_nn], y[:, self.c_nn:]
        shift, scale = self._coupling(z1, cond)
        z2 = z2 / scale - shift
        shift_ft, scale_ft, ld_ft = self._features(cond)
        x = torch.cat([z1, z2], dim=1) / scale_ft - shift_ft
        logdet = ld_ft.expand(y.shape[0]) + torch.log(scale).sum(dim=(1, 2, 3))
        return x, -logdet


class FlowStep(nn.Module):
    """ActNorm -> invertible 1x1 conv -> (optional) conditional affine coupling."""

    def __init__(self, channels, cond_channels=None, lu=False, **affine_kw):
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.invconv = InvConv1x1(channels, lu=lu)
        self.affine = CondAffine(channels, cond_channels, **affine_kw) if cond_channels else None

    @property
    def conditional(self) -> bool:
        return self.affine is not None

    def forward(self, x, cond=None):
        x, ld1 = self.actnorm(x)
        x, ld2 = self.invconv(x)
        logdet = ld1 + ld2
        if self.affine is not None:
            x, ld3 = self.affine(x, cond)
            logdet = logdet + ld3
        return x, logdet

    def inverse(self, y, cond=None):
        logdet = y.new_zeros(y.shape[0])
        if self.affine is not None:
            y, ld = self.affine.inverse(y, cond)
            logdet = logdet + ld
        y, ld2 = self.invconv.inverse(y)
        y, ld1 = self.actnorm.inverse(y)
        return y, logdet + ld1 + ld2


class Split(nn.Module):
    """Factor out half the channels with a learned (unconditional) Gaussian prior.

    forward: ``x -> ((z1, eps), logdet)`` with ``z1 = x[:, :C/2]``, ``z2 = x[:, C/2:]``,
    ``(mean, logs) = cross(conv(z1))`` and ``eps = (z2 - mean) / exp(logs)``; the
    logdet is the Jacobian term ``-sum(logs)`` (the Gaussian log-density of ``eps``
    is added by the model).  inverse: ``z2 = mean + exp(logs) * eps``.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.c_pass = channels // 2
        self.c_out = channels - self.c_pass
        self.conv = ZeroConv(self.c_pass, 2 * self.c_out)

    def prior(self, z1):
        return _cross(self.conv(z1))

    def forward(self, x, cond=None):
        z1, z2 = x[:, :self.c_pass], x[:, self.c_pass:]
        mean, logs = self.prior(z1)
        eps = (z2 - mean) * torch.exp(-logs)
        return (z1, eps), -logs.sum(dim=(1, 2, 3))

    def inverse(self, y, cond=None):
        z1, eps = y
        mean, logs = self.prior(z1)
        z2 = mean + torch.exp(logs) * eps
        return torch.cat([z1, z2], dim=1), logs.sum(dim=(1, 2, 3))


def gaussian_logp(z: torch.Tensor) -> torch.Tensor:
    """Per-sample log N(z; 0, I)."""
    return (-0.5 * (z * z + math.log(2 * math.pi))).sum(dim=(1, 2, 3))
