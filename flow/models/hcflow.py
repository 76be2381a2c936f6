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

A :class:`flow.models.protocol.FlowModel`: latents are :class:`Latents` with one
tensor per level in encode order (finest first): ``tau * eps_l`` where
``eps_l = (a'_l - mu_l) / sigma_l`` is standard normal under the model.  The LR
(``y_{L-1}``) is the decoder's conditioning input.  Unlike the official code the
latents are explicit: a seeded sample is reproducible, and encode is deterministic
unless dequantisation noise is asked for.

Behaviour that differs from SRFlow (tested in ``tests/test_hcflow.py``; measured
reach in ``docs/MEASUREMENTS.md``): only level-0 latents are strictly local.  A coarser
latent changes ``y_l``, which feeds the next finer feature extractor, so its support is
in principle the extractors' whole receptive field.  So there is no local region
decode (``supports_region = False``): ``decode(region=...)`` and ``encode_window``
work on the whole image and crop (exact, not faster).

Configurations live in :mod:`flow.models.hcflow_config`, the layers in
:mod:`flow.layers.hcflow`, the likelihood terms and losses in
:mod:`flow.models.hcflow_losses`.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers.hcflow import Affine, Affine3Shift, Haar, HCStep, SplitSlot, SqueezeLayer, bounded_logscale
from ..layers.invertible import ZeroConv
from ..layers.rrdb import RRDB
from ..ops.images import quantize_8bit
from . import hcflow_losses as losses
from .hcflow_config import HCFlowConfig
from .protocol import NLL, Condition, FlowModelBase, Latents, TrainingLoss

_LOG2PI = math.log(2 * math.pi)


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


class HCFlow(FlowModelBase):
    """HCFlow SR or rescaling: a :class:`flow.models.protocol.FlowModel` plus
    ``downscale``/``upscale``/``rescale_roundtrip`` for rescaling."""

    family = "hcflow"
    supports_region = False
    exact_reconstruction = False     # decode starts from the LR, not the encode's continuous y

    def __init__(self, cfg: HCFlowConfig):
        super().__init__(cfg)
        self.flow = HCFlowNet(cfg)

    @property
    def kind(self) -> str:
        return self.cfg.kind

    @property
    def loss_in_forward(self) -> bool:
        """The rescaling objective is not ``forward``: DDP cannot see it."""
        return self.cfg.kind != "rescaling"

    def draw_order(self, n_levels: int):
        """Top level first, as the official sampler draws."""
        return reversed(range(n_levels))

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
        lr, hw, pad = self._prepare_lr(lr)          # lr_multiple 1: never padded
        top = self.cfg.L - 1
        c = self.flow.cond_flow(top).features(lr)
        return self._condition(lr, hw, pad, {"lr": lr, top: c})

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
        ``y_{L-1}`` of an encode, for an exact reconstruction).  ``region``: the window
        (y0, y1, x0, x1) of the full decode (exact; no faster: coarse latents act globally)."""
        cond = self._cond(lr)
        levels = latents.levels if isinstance(latents, Latents) else list(latents)
        if region is not None:
            y0, y1, x0, x1 = region
            return self.decode(cond, levels, y=y)[..., y0:y1, x0:x1]
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
            logp = logp + losses.dirac_lr_logp(out["y"], lr_img)
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
        """SR training objective ``(loss, nll, l1)``: see :func:`hcflow_losses.sr_loss`."""
        return losses.sr_loss(self, hr, lr, quant, weight_l1, l1_batch, generator, weight_nll)

    def rescaling_loss(self, hr, lr_bicubic, w_lr: float = 0.05, w_z: float = 1e-5, w_hr: float = 1.0,
                       tau: float = 1.0, generator=None):
        """Rescaling objective ``(loss, parts)``: see :func:`hcflow_losses.rescaling_loss`."""
        return losses.rescaling_loss(self, hr, lr_bicubic, w_lr, w_z, w_hr, tau, generator)

    def training_loss(self, hr, lr, optim, generator=None, module=None) -> TrainingLoss:
        """SR: ``forward`` (through ``module``) with ``optim``'s quant, weight_l1, l1_batch
        and weight_nll, reported: the official NLL.  Rescaling: :meth:`rescaling_loss`
        with weight_lr, weight_z, weight_hr and rescale_tau (not through ``module``:
        ``loss_in_forward`` is False), reported: the loss, parts logged."""
        if self.kind == "rescaling":
            loss, parts = self.rescaling_loss(hr, lr, optim.weight_lr, optim.weight_z, optim.weight_hr,
                                              optim.rescale_tau, generator=generator)
            return TrainingLoss(loss, loss, parts["hr_l1"], parts)
        fn = self if module is None else module
        loss, nll, l1 = fn(hr, lr, quant=optim.quant, weight_l1=optim.weight_l1, l1_batch=optim.l1_batch,
                           generator=generator, weight_nll=optim.weight_nll)
        return TrainingLoss(loss, nll, l1)

    def prepare_training(self) -> None:
        """Rescaling (our recipe): the trunk's ActNorms start as the identity instead of
        data-initialised, so that the flow LR starts as the Haar box-downscaled image
        (not a standardised one)."""
        if self.kind == "rescaling":
            for m in self.flow.layers.modules():
                if hasattr(m, "inited"):
                    m.inited.fill_(True)

    @torch.no_grad()
    def data_init(self, hr, lr) -> None:
        """Rescaling: one pass of the rescaling loss (the ActNorms it reaches); SR: the NLL."""
        self.train()
        if self.kind == "rescaling":
            self.rescaling_loss(hr, lr)
        else:
            self.nll(hr, lr, dequantize=True)
