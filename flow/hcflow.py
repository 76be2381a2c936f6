"""HCFlow (Liang et al., ICCV 2021): a hierarchical conditional flow HR <-> (LR, latents).

Checkpoint-compatible with the official SR (DF2K 4x, CelebA 8x) and rescaling
(DF2K 4x) models: the module tree below produces exactly the official state-dict
keys (``flow.layers.{i}.*``, ``flow.level{l}_condFlow.*``).

Structure (code levels ``l = 0 .. L-1``, 0 the finest).  Encoding, level ``l``:
squeeze (SR) or Haar (rescaling) C -> 4C, ``K - P[l]`` *unconditional* steps, then a
plain slice: ``y_l = x[:, :k]`` continues (``k = C/2``, or 3 at the last level, so
``y_{L-1}`` is the LR image) and ``a_l = x[:, k:]`` goes to the level's conditional
flow: ``P[l]`` conditional steps and a learned Gaussian prior N(mu_l, sigma_l), both
conditioned on ``c_l = phi_l([y_l, up2(c_{l+1}), up4(c_{l+2}), ...])``.

Latents, as for :class:`flow.model.SRFlow`, are :class:`flow.model.Latents` with one
tensor per level in encode order (finest first): ``tau * eps_l`` where
``eps_l = (a'_l - mu_l) / sigma_l`` is standard normal under the model.  The LR
(``y_{L-1}``) is the decoder's conditioning input.  Unlike the official code the
latents are explicit: a seeded sample is reproducible, and encode is deterministic
unless dequantisation noise is asked for.

Behaviour that differs from SRFlow (measured in ``tests/test_hcflow.py`` and
``tests/test_session_hcflow.py``, documented in the README): only level-0 latents are
strictly local.  A coarser latent changes ``y_l``, which feeds the next finer feature
extractor, so its support is far larger: in principle the extractors' whole receptive
field (every pixel of a 192^2 image at the official sizes), in practice, on our trained
small models, changes above 0.5/255 reach ~12 px beyond an edited mask at level 1 versus
~6 px at level 0.  Region decoding is not offered (``supports_region = False``): edits
decode the full image.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import ActNorm, ConvNorm, InvConv1x1, ZeroConv, squeeze2d, unsqueeze2d
from .model import NLL, Condition, FlowSampler, Latents
from .rrdb import RRDB

#: the coupling's bounded log-scale: ``ATAN_K * atan(2 s)`` (the literal 0.318, not 1/pi)
ATAN_K = 0.318
#: the Dirac-LR likelihood's fixed log-std
DIRAC_LOGSTD = -6.0
_LOG2PI = math.log(2 * math.pi)


def bounded_logscale(s: torch.Tensor) -> torch.Tensor:
    return ATAN_K * torch.atan(2.0 * s)


def quantize_8bit(y: torch.Tensor, straight_through: bool = False) -> torch.Tensor:
    """``round(255 clamp(y, 0, 1)) / 255``; with ``straight_through`` the gradient passes
    the rounding unchanged (as for the flow LR in the official losses)."""
    yc = y.clamp(0, 1)
    yq = torch.round(yc * 255) / 255
    return yc + (yq - yc).detach() if straight_through else yq


# ----------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------

@dataclass
class HCFlowConfig:
    """One HCFlow architecture.  ``kind``: ``sr`` or ``rescaling``."""

    name: str = "custom"
    kind: str = "sr"
    scale: int = 4
    L: int = 2
    K: int = 26                          # total steps per level (main + conditional)
    P: list[int] = field(default_factory=lambda: [13, 13])   # conditional steps per level
    hidden: int = 64                     # FCN hidden channels (SR main + all conditional steps)
    dense_growth: int = 32               # rescaling main-step DenseBlock growth
    rrdb_nb: list[int] = field(default_factory=lambda: [7, 7])
    rrdb_nf: int = 64
    rrdb_gc: int = 32
    quant: int = 64                      # dequantisation bins (top-level yml key ``quant``)
    family: str = "hcflow"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HCFlowConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - known
        if extra:
            raise ValueError(f"unknown HCFlow config keys: {sorted(extra)}")
        return cls(**{k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in d.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def validate(self) -> "HCFlowConfig":
        if self.kind not in ("sr", "rescaling"):
            raise ValueError(f"kind must be 'sr' or 'rescaling', got {self.kind!r}")
        if 2 ** self.L != self.scale:
            raise ValueError(f"HCFlow needs scale == 2**L (scale {self.scale}, L {self.L})")
        if len(self.P) != self.L or any(not 0 <= p <= self.K for p in self.P):
            raise ValueError(f"P must list 0..K conditional steps for each of the {self.L} levels: {self.P}")
        if len(self.rrdb_nb) != 2 or min(self.rrdb_nb) < 0:
            raise ValueError(f"rrdb_nb must be two block counts, got {self.rrdb_nb}")
        return self

    @property
    def cond_channels(self) -> int:
        return 2 * self.rrdb_nf if self.kind == "sr" else self.rrdb_nf


def _hc(name, kind, scale, L, K, P, nb, gc, quant, hidden=64, growth=32) -> HCFlowConfig:
    return HCFlowConfig(name=name, kind=kind, scale=scale, L=L, K=K, P=list(P), rrdb_nb=list(nb),
                        rrdb_gc=gc, quant=quant, hidden=hidden, dense_growth=growth).validate()


HC_PRESETS: dict[str, HCFlowConfig] = {
    "hcflow_sr_df2k_4x": _hc("hcflow_sr_df2k_4x", "sr", 4, 2, 26, [13, 13], [7, 7], 32, 64),
    "hcflow_sr_celeba_8x": _hc("hcflow_sr_celeba_8x", "sr", 8, 3, 26, [13, 13, 13], [5, 5], 32, 256),
    "hcflow_rescaling_df2k_4x": _hc("hcflow_rescaling_df2k_4x", "rescaling", 4, 2, 14, [6, 6], [2, 1], 16, 64),
    # small models trained by us (assets/) and test sizes
    "hcflow_studio_sr_4x": HCFlowConfig(name="hcflow_studio_sr_4x", kind="sr", scale=4, L=2, K=6, P=[3, 3],
                                        hidden=32, rrdb_nb=[1, 1], rrdb_nf=32, rrdb_gc=16, quant=64).validate(),
    "hcflow_studio_rescaling_4x": HCFlowConfig(name="hcflow_studio_rescaling_4x", kind="rescaling", scale=4,
                                               L=2, K=8, P=[3, 3], hidden=32, dense_growth=16, rrdb_nb=[1, 1],
                                               rrdb_nf=32, rrdb_gc=16, quant=64).validate(),
    "hcflow_tiny_sr_4x": _hc("hcflow_tiny_sr_4x", "sr", 4, 2, 3, [2, 2], [1, 1], 8, 64, hidden=16),
    "hcflow_tiny_sr_8x": _hc("hcflow_tiny_sr_8x", "sr", 8, 3, 3, [2, 1, 2], [1, 1], 8, 256, hidden=16),
    "hcflow_tiny_rescaling_4x": _hc("hcflow_tiny_rescaling_4x", "rescaling", 4, 2, 4, [2, 2], [1, 1], 8, 64,
                                    hidden=16, growth=8),
}


def hcflow_from_official_yaml(opt: dict) -> HCFlowConfig:
    """The :class:`HCFlowConfig` of an official HCFlow option dict (``train_*.yml``/
    ``test_*.yml`` parsed)."""
    g = opt.get("network_G") or {}
    which = g.get("which_model_G")
    if which not in ("HCFlowNet_SR", "HCFlowNet_Rescaling"):
        raise ValueError(f"not an HCFlow config (network_G.which_model_G = {which!r})")
    fd = g.get("flowDownsampler") or {}
    so = fd.get("splitOff") or g.get("splitOff") or {}
    kind = "sr" if which == "HCFlowNet_SR" else "rescaling"
    scale = int(opt.get("scale", 4))
    L = int(fd.get("L", round(math.log2(scale))))
    P = so.get("after_flowstep", [0] * L)
    if isinstance(P, int):
        P = [P] * L
    cfg = HCFlowConfig(
        name=f"hcflow_{kind}_{scale}x (yaml)", kind=kind, scale=scale, L=L, K=int(fd.get("K", 26)),
        P=[int(p) for p in P], hidden=int(so.get("hidden_channels", 64)),
        dense_growth=int(fd.get("hidden_channels", 32)) if kind == "rescaling" else 32,
        rrdb_nb=[int(b) for b in so.get("RRDB_nb", [7, 7])], rrdb_nf=int(so.get("RRDB_nf", 64)),
        rrdb_gc=int(so.get("RRDB_gc", 32)), quant=int(opt.get("quant", 256)))
    for p in HC_PRESETS.values():             # a recognised official architecture keeps its name
        if dataclasses.replace(p, name=cfg.name) == cfg:
            return dataclasses.replace(p)
    return cfg.validate()


def is_hcflow_yaml(opt) -> bool:
    g = opt.get("network_G") if isinstance(opt, dict) else None
    return isinstance(g, dict) and str(g.get("which_model_G", "")).startswith("HCFlowNet")


# ----------------------------------------------------------------------------
# invertible layers (forward = encode direction; each returns (out, logdet per sample))
# ----------------------------------------------------------------------------

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


class SqueezeLayer(nn.Module):
    """Space-to-depth by 2 (output channel ``4c + 2 dy + dx``); volume preserving."""

    def forward(self, x, cond=None):
        return squeeze2d(x, 2), x.new_zeros(x.shape[0])

    def inverse(self, y, cond=None):
        return unsqueeze2d(y, 2), y.new_zeros(y.shape[0])


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


# ----------------------------------------------------------------------------
# the conditional flow of one level
# ----------------------------------------------------------------------------

class ConditionalFlow(nn.Module):
    """Feature extractor ``phi_l``, ``P`` conditional steps on ``a_l`` and the prior head ``f``."""

    def __init__(self, ca: int, cin: int, n_steps: int, cfg: HCFlowConfig):
        super().__init__()
        nf, gc = cfg.rrdb_nf, cfg.rrdb_gc
        self.sr = cfg.kind == "sr"
        cc = cfg.cond_channels
        self.conv_first = nn.Conv2d(cin, nf, 3, padding=1)
        self.RRDB_trunk0 = nn.Sequential(*[RRDB(nf, gc) for _ in range(cfg.rrdb_nb[0])])
        self.RRDB_trunk1 = nn.Sequential(*[RRDB(nf, gc) for _ in range(cfg.rrdb_nb[1])])
        self.trunk_conv1 = nn.Conv2d(nf, nf, 3, padding=1)
        self.additional_flow_steps = nn.ModuleList(
            HCStep(ca, Affine(ca, cc, cfg.hidden)) for _ in range(n_steps))
        self.f = ZeroConv(cc, 2 * ca)

    def features(self, u: torch.Tensor) -> torch.Tensor:
        f0 = self.conv_first(u)
        f1 = self.RRDB_trunk0(f0)
        f2 = self.trunk_conv1(self.RRDB_trunk1(f1)) + f0
        return torch.cat([f1, f2], 1) if self.sr else f2

    def prior(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma) of ``a'_l`` given ``c_l``."""
        h = self.f(c)
        rho = h[:, 1::2]
        return h[:, 0::2], (rho if self.sr else bounded_logscale(rho))

    def encode(self, a, c, prior=None):
        """a_l -> (eps_l, logdet of the steps, log N(a'_l; mu, sigma)) per sample.
        ``prior``: ``self.prior(c)`` when the caller has it already."""
        logdet = a.new_zeros(a.shape[0])
        for step in self.additional_flow_steps:
            a, ld = step(a, c)
            logdet = logdet + ld
        mu, ls = self.prior(c) if prior is None else prior
        eps = (a - mu) * torch.exp(-ls)
        logn = (-0.5 * eps ** 2 - ls - 0.5 * _LOG2PI).sum(dim=(1, 2, 3))
        return eps, logdet, logn

    def decode(self, z, c):
        """``z = tau * eps_l`` -> a_l."""
        mu, ls = self.prior(c)
        a = mu + torch.exp(ls) * z
        for step in reversed(self.additional_flow_steps):
            a, _ = step.inverse(a, c)
        return a


# ----------------------------------------------------------------------------
# the network
# ----------------------------------------------------------------------------

class HCFlowNet(nn.Module):
    """``flow``: the main trunk ``layers`` and one ``level{l}_condFlow`` per level."""

    def __init__(self, cfg: HCFlowConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList()
        self.level_ranges: list[tuple[int, int]] = []   # layer index range of each level
        self.keep: list[int] = []
        self.a_channels: list[int] = []
        C = 3
        for l in range(cfg.L):
            start = len(self.layers)
            self.layers.append(SqueezeLayer() if cfg.kind == "sr" else Haar(C))
            C *= 4
            for k in range(cfg.K - cfg.P[l]):
                if cfg.kind == "sr":
                    self.layers.append(HCStep(C, Affine(C, 0, cfg.hidden)))
                else:
                    self.layers.append(HCStep(C, Affine3Shift(C, k % 2 == 0, cfg.dense_growth), permute=False))
            keep = C // 2 if l < cfg.L - 1 else 3
            self.layers.append(SplitSlot(keep))
            self.level_ranges.append((start, len(self.layers)))
            self.keep.append(keep)
            self.a_channels.append(C - keep)
            C = keep
        nf = cfg.cond_channels
        for l in range(cfg.L):
            cin = 3 if l == cfg.L - 1 else self.keep[l] + nf * (cfg.L - 1 - l)
            setattr(self, f"level{l}_condFlow", ConditionalFlow(self.a_channels[l], cin, cfg.P[l], cfg))

    def cond_flow(self, l: int) -> ConditionalFlow:
        return getattr(self, f"level{l}_condFlow")

    @staticmethod
    def conditioning_input(y_l: torch.Tensor, coarser: list[torch.Tensor]) -> torch.Tensor:
        """``[y_l, up2(c_{l+1}), up4(c_{l+2}), ...]`` (nearest upsampling); ``coarser``
        lists c_{l+1}, c_{l+2}, ... nearest first."""
        parts = [y_l] + [F.interpolate(c, scale_factor=2 ** (j + 1), mode="nearest")
                         for j, c in enumerate(coarser)]
        return torch.cat(parts, 1)

    def main_forward(self, x):
        """HR -> (y_{L-1}, [a_0 .. a_{L-1}], [y_0 .. y_{L-1}], logdet)."""
        logdet = x.new_zeros(x.shape[0])
        a_list, y_list = [], []
        for (s, e) in self.level_ranges:
            for m in self.layers[s:e - 1]:
                x, ld = m(x)
                logdet = logdet + ld
            k = self.layers[e - 1].keep
            a_list.append(x[:, k:])
            x = x[:, :k]
            y_list.append(x)
        return x, a_list, y_list, logdet

    def main_inverse_level(self, l: int, y_l, a_l):
        s, e = self.level_ranges[l]
        x = torch.cat([y_l, a_l], 1)
        for m in reversed(self.layers[s:e - 1]):
            x, _ = m.inverse(x)
        return x


class HCFlow(FlowSampler, nn.Module):
    """HCFlow SR or rescaling, with the same interface as :class:`flow.model.SRFlow`
    (``encode_condition``, ``encode``, ``decode``, ``draw_latents``, ``sample``,
    ``nll``) plus ``downscale``/``upscale`` for rescaling."""

    supports_region = False

    def __init__(self, cfg: HCFlowConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.flow = HCFlowNet(cfg)
        self.scale = cfg.scale

    # -- geometry ----------------------------------------------------------
    @property
    def latent_strides(self) -> list[int]:
        return [2 ** (l + 1) for l in range(self.cfg.L)]

    @property
    def total_stride(self) -> int:
        return 2 ** self.cfg.L

    @property
    def lr_multiple(self) -> int:
        return 1

    def latent_shapes(self, hr_h: int, hr_w: int) -> list[tuple[int, int, int]]:
        return [(c, hr_h // s, hr_w // s) for c, s in zip(self.flow.a_channels, self.latent_strides)]

    # -- conditioning --------------------------------------------------------
    def encode_condition(self, lr: torch.Tensor, cache: bool | None = None) -> Condition:
        """The LR-only part of the conditioning: the top level's features ``c_{L-1}``
        (the finer ones depend on the coarser latents and are recomputed per decode)."""
        if lr.dim() != 4 or lr.shape[1] != 3:
            raise ValueError(f"LR must have shape (N, 3, h, w), got {tuple(lr.shape)}")
        if not torch.is_floating_point(lr):
            raise TypeError("LR must be a float tensor in [0, 1]")
        h, w = lr.shape[-2:]
        top = self.cfg.L - 1
        c = self.flow.cond_flow(top).features(lr)
        return Condition(lr_shape=(h, w), pad=(0, 0), features={"lr": lr, top: c}, batch=lr.shape[0],
                         hr_size=(h * self.scale, w * self.scale))

    # -- directions ----------------------------------------------------------
    def encode_levels(self, hr: torch.Tensor, dequantize: bool = False, quant: int | None = None,
                      generator: torch.Generator | None = None) -> dict:
        """The full encode: ``y`` (continuous y_{L-1}), ``eps`` (list, finest first),
        ``logdet`` (Jacobian log-det of trunk + conditional steps), ``logn`` (sum of
        the prior log-densities), ``mu``/``logstd``/``c`` per level.

        Dequantisation, when asked for, adds ``U[0, 1)/quant`` (not centred; drawn in
        float32 before anything else), as the official NLL does."""
        H, W = hr.shape[-2:]
        if H % self.total_stride or W % self.total_stride:
            raise ValueError(f"HR size {H}x{W} must be divisible by {self.total_stride}")
        if dequantize:
            q = quant or self.cfg.quant
            u = torch.rand(hr.shape, generator=generator, dtype=torch.float32,
                           device="cpu" if generator is not None else hr.device)
            hr = hr + u.to(hr.device, hr.dtype) / q
        y, a_list, y_list, logdet = self.flow.main_forward(hr)
        L = self.cfg.L
        eps, mus, lss, cs = [None] * L, [None] * L, [None] * L, [None] * L
        logn = hr.new_zeros(hr.shape[0])
        coarser: list[torch.Tensor] = []
        for l in reversed(range(L)):
            cf = self.flow.cond_flow(l)
            u = y if l == L - 1 else self.flow.conditioning_input(y_list[l], coarser)
            c = cf.features(u)
            mus[l], lss[l] = cf.prior(c)
            e, ld, ln = cf.encode(a_list[l], c, (mus[l], lss[l]))
            logdet, logn = logdet + ld, logn + ln
            eps[l], cs[l] = e, c
            coarser = [c] + coarser
        return {"y": y, "eps": eps, "logdet": logdet, "logn": logn, "mu": mus, "logstd": lss, "c": cs}

    def encode(self, hr: torch.Tensor, lr=None, dequantize: bool = False, quant: int | None = None,
               generator: torch.Generator | None = None):
        """HR -> (:class:`Latents` of the standardised eps_l, logdet).  ``lr`` is only
        used for the size check (HCFlow's encode does not look at the LR image)."""
        out = self.encode_levels(hr, dequantize, quant, generator)
        if lr is not None:
            cond = lr if isinstance(lr, Condition) else None
            H, W = cond.hr_size if cond is not None else (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale)
            if hr.shape[-2:] != (H, W):
                raise ValueError(f"HR size {tuple(hr.shape[-2:])} does not match LR x{self.scale} = {(H, W)}")
        lat = Latents(out["eps"], self.latent_strides, tuple(hr.shape[-2:]), top=out["y"])
        return lat, out["logdet"]

    def decode(self, lr, latents: Latents | list, region=None, y: torch.Tensor | None = None):
        """Latents (``tau * eps_l``, finest first) -> SR image, not clamped.

        The top-level variable is the LR image, or ``y`` (e.g. the continuous
        ``y_{L-1}`` of an encode, for an exact reconstruction)."""
        if region is not None:
            raise ValueError("HCFlow has no local region decode (coarse latents act globally)")
        cond = self._cond(lr)
        levels = latents.levels if isinstance(latents, Latents) else list(latents)
        L = self.cfg.L
        top = L - 1
        x = cond.features["lr"] if y is None else y
        if levels[0].shape[0] != x.shape[0]:
            if x.shape[0] != 1:
                raise ValueError("latent batch does not match the LR batch")
            x = x.expand(levels[0].shape[0], -1, -1, -1)
        c_top = cond.features[top]
        if y is not None:
            c_top = self.flow.cond_flow(top).features(y)
        coarser: list[torch.Tensor] = []
        for l in reversed(range(L)):
            cf = self.flow.cond_flow(l)
            if l == top:
                c = c_top.expand(x.shape[0], -1, -1, -1) if c_top.shape[0] != x.shape[0] else c_top
            else:
                c = cf.features(self.flow.conditioning_input(x, coarser))
            a = cf.decode(levels[l].to(c.dtype), c)
            x = self.flow.main_inverse_level(l, x, a)
            coarser = [c] + coarser
        return x

    def log_prob(self, hr, lr=None, dequantize=False, quant=None, generator=None):
        """(log p in nats per sample, HR pixels): Jacobian + conditional priors, plus
        the Dirac-LR term against ``lr`` when given (the official likelihood)."""
        out = self.encode_levels(hr, dequantize, quant, generator)
        logp = out["logdet"] + out["logn"]
        if lr is not None:
            lr_img = lr.features["lr"] if isinstance(lr, Condition) else lr
            logp = logp + dirac_lr_logp(out["y"], lr_img)
        return logp, hr.shape[-2] * hr.shape[-1]

    def nll(self, hr, lr=None, dequantize: bool = False, quant: int | None = None, generator=None,
            dequantized: bool = False) -> NLL:
        """``official_bpp``: the official number, -(logdet - HW ln q + log p(y^|LR)) / (HW ln 2)
        (bits per HR *pixel*; the quant term counted once per pixel).  ``bits_per_dim``:
        the same log-likelihood per dimension with 3HW ln q.

        The official HCFlow always dequantizes (``x = hr + U[0,1)/q``), so its logged NLL is
        ``nll(hr, lr, dequantize=True)`` for the same noise draw.  For an input ``x`` that
        already carries that noise, pass ``dequantized=True``: no noise is added and the
        -HW ln q term is counted, which gives the official number for ``x`` exactly;
        without it (``dequantize=dequantized=False``) the result is lower by ``log2(q)`` bits
        per pixel and per dim alike."""
        if dequantize and dequantized:
            raise ValueError("dequantize=True adds noise to an input that dequantized=True says already has it")
        q = quant or self.cfg.quant
        logp, pixels = self.log_prob(hr, lr, dequantize, q, generator)
        lq = math.log(q) if (dequantize or dequantized) else 0.0
        bpp = (-logp + pixels * lq) / (pixels * math.log(2))
        bpd = (-logp + 3 * pixels * lq) / (3 * pixels * math.log(2))
        return NLL(bpd, bpp)

    # -- sampling ------------------------------------------------------------
    def draw_latents(self, cond: Condition, temperature: float, seed: int, n: int = 1) -> Latents:
        """Latents for ``n`` samples; sample k draws from ``Generator().manual_seed(seed + k)``
        top level first, as the official sampler does (so seed s, n = 1 matches the
        official sampler run after ``torch.manual_seed(s)`` on CPU)."""
        H, W = cond.hr_size
        shapes = self.latent_shapes(H, W)
        per = []
        for k in range(n):
            g = torch.Generator().manual_seed(int(seed) + k)
            drawn = {l: torch.randn((1,) + shapes[l], generator=g) * float(temperature)
                     for l in reversed(range(self.cfg.L))}
            per.append([drawn[l] for l in range(self.cfg.L)])
        dev, dtype = self.device, next(self.parameters()).dtype
        levels = [torch.cat([p[i] for p in per]).to(dev, dtype) for i in range(self.cfg.L)]
        return Latents(levels, self.latent_strides, (H, W))

    # -- rescaling -----------------------------------------------------------
    @torch.no_grad()
    def downscale(self, hr: torch.Tensor, quantize: bool = True) -> torch.Tensor:
        """The flow's own LR ``clamp(y_{L-1})`` (8-bit quantised unless told otherwise)."""
        y, _, _, _ = self.flow.main_forward(hr)
        return quantize_8bit(y) if quantize else y.clamp(0, 1)

    @torch.no_grad()
    def upscale(self, lr: torch.Tensor, temperature: float = 0.0, seed: int = 0) -> torch.Tensor:
        """HR from an LR (for rescaling: from :meth:`downscale`'s LR), clamped to [0, 1]."""
        out = [self.sample(lr[i:i + 1], temperature, seed) for i in range(lr.shape[0])]
        return torch.cat(out).clamp(0, 1)

    def rescale_roundtrip(self, hr: torch.Tensor, temperature: float = 0.0, seed: int = 0):
        """(flow LR, reconstruction) of ``hr``: downscale, 8-bit quantise, upscale."""
        lr = self.downscale(hr)
        return lr, self.upscale(lr, temperature, seed)

    # -- training ------------------------------------------------------------
    def forward(self, hr, lr, quant: int | None = None, weight_l1: float = 0.0, l1_batch: int = 0,
                generator=None, weight_nll: float = 1.0):
        """SR training objective ``(loss, nll, l1)``: ``weight_nll`` x the official NLL
        (bits per HR pixel, uniform dequantisation, Dirac-LR term) + ``weight_l1`` x L1 of
        the tau = 0 decode (HCFlow+)."""
        nll = self.nll(hr, lr, dequantize=True, quant=quant, generator=generator).official_bpp.mean()
        loss, l1 = weight_nll * nll, None
        if weight_l1 > 0:
            n = hr.shape[0] if l1_batch <= 0 else min(l1_batch, hr.shape[0])
            cond = self.encode_condition(lr[:n], cache=False)
            sr = self.decode(cond, self.draw_latents(cond, 0.0, 0, n)).clamp(0, 1)
            l1 = F.l1_loss(sr, hr[:n])
            loss = loss + weight_l1 * l1
        return loss, nll, l1

    def rescaling_loss(self, hr, lr_bicubic, w_lr: float = 0.05, w_z: float = 1e-5, w_hr: float = 1.0,
                       tau: float = 1.0, generator=None):
        """Rescaling objective ``(loss, parts)``: LR L2 towards bicubic (x0.05), latent L2
        (x1e-5) and HR L1 of the reconstruction from the straight-through 8-bit
        quantised flow LR at ``tau`` (x1)."""
        out = self.encode_levels(hr)
        y = out["y"]
        l_lr = F.mse_loss(y.clamp(0, 1), lr_bicubic)
        l_z = torch.cat([e.flatten() for e in out["eps"]]).pow(2).mean()
        yq = quantize_8bit(y, straight_through=True)
        cond = self.encode_condition(yq)
        lat = self.draw_latents(cond, tau, 0 if generator is None else int(torch.randint(
            0, 2 ** 31 - 1, (1,), generator=generator)), yq.shape[0])
        rec = self.decode(cond, lat).clamp(0, 1)
        l_hr = F.l1_loss(rec, hr)
        parts = {"lr_l2": l_lr, "z_l2": l_z, "hr_l1": l_hr}
        # every term counts, a non-finite one too, so the trainer's skip-bad-batch guard sees it
        loss = w_lr * l_lr + w_z * l_z + w_hr * l_hr
        return loss, parts


def dirac_lr_logp(y: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """log N(round(255 clamp(y)) / 255; lr, e^-6) summed per sample, with a straight-through
    gradient through the rounding (the official "Dirac-LR" term)."""
    d = quantize_8bit(y, straight_through=True) - lr
    return (-DIRAC_LOGSTD - 0.5 * _LOG2PI - 0.5 * math.exp(-2 * DIRAC_LOGSTD) * d ** 2).sum(dim=(1, 2, 3))
