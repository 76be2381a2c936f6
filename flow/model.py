"""The SRFlow model: RRDB encoder + multi-level conditional flow.

Directions: ``encode`` maps an HR image to latents (y -> z), ``decode`` maps latents
back to an HR image (z -> y).  Images are float tensors in [0, 1], shape (N, 3, H, W).

Latents (:class:`Latents`) hold one tensor per level in *encode order*: the
standardised ``eps`` factored out by each split (finest first), then the top-level
``z``.  Every level is N(0, I) under the model, so sampling at temperature tau
draws every level from N(0, tau^2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .layers import CondCache, FlowStep, Split, Squeeze, conv3x3_winograd, gaussian_logp, winograd_weight
from .rrdb import RRDBNet


@dataclass
class Latents:
    """Per-level latent tensors (encode order) and their strides in HR pixels.

    ``levels[i]`` has shape (N, C_i, H / strides[i], W / strides[i]) for the
    (padded) HR size.  ``hr_size`` is the unpadded output size (H, W).
    """

    levels: list[torch.Tensor]
    strides: list[int]
    hr_size: tuple[int, int]
    #: HCFlow only: the continuous top-level variable y_{L-1} of an encode (pass it to
    #: ``HCFlow.decode(y=...)`` for an exact reconstruction); edits do not carry it.
    top: torch.Tensor | None = None

    def clone(self) -> "Latents":
        return Latents([t.clone() for t in self.levels], list(self.strides), tuple(self.hr_size),
                       None if self.top is None else self.top.clone())

    def to(self, device) -> "Latents":
        return Latents([t.to(device) for t in self.levels], list(self.strides), tuple(self.hr_size),
                       None if self.top is None else self.top.to(device))

    def select(self, idx) -> "Latents":
        """Samples ``idx`` (an int or slice) of the batch."""
        sl = slice(idx, idx + 1) if isinstance(idx, int) else idx
        return Latents([t[sl] for t in self.levels], list(self.strides), tuple(self.hr_size),
                       None if self.top is None else self.top[sl])

    @staticmethod
    def cat(items: list["Latents"]) -> "Latents":
        first = items[0]
        top = None if any(it.top is None for it in items) else torch.cat([it.top for it in items])
        return Latents([torch.cat([it.levels[i] for it in items]) for i in range(len(first.levels))],
                       list(first.strides), tuple(first.hr_size), top)

    @property
    def batch(self) -> int:
        return self.levels[0].shape[0]

    def __len__(self):
        return len(self.levels)

    def __iter__(self):
        return iter(self.levels)

    def __getitem__(self, i):
        return self.levels[i]

    def numel(self) -> int:
        return sum(t[0].numel() for t in self.levels)

    def equal(self, other: "Latents") -> bool:
        return (len(self) == len(other) and
                all(torch.equal(a, b) for a, b in zip(self.levels, other.levels)))


@dataclass
class Condition:
    """The encoder's output for one LR batch, reusable across samples and edits.

    ``features`` maps the HR/LR ratio of a map (0 for LR/2) to its conditioning
    tensor; ``caches`` holds per-layer :class:`CondCache` once built (inference only).
    """

    lr_shape: tuple[int, int]          # unpadded LR (h, w)
    pad: tuple[int, int]               # reflect padding added to LR (bottom, right)
    features: dict[int, torch.Tensor]
    caches: list | None = None
    batch: int = 1
    hr_size: tuple[int, int] = (0, 0)    # unpadded HR (H, W)

    def narrow(self, n: int) -> "Condition":
        """The first ``n`` items of the batch (features only; caches are dropped)."""
        return Condition(self.lr_shape, self.pad, {k: v[:n] for k, v in self.features.items()},
                         None, n, self.hr_size)

    def nbytes(self) -> int:
        n = sum(t.numel() * t.element_size() for t in self.features.values())
        for c in self.caches or []:
            if c is not None:
                n += sum(t.numel() * t.element_size() for t in (c.shift_ft, c.scale_ft, c.h0_ft))
        return n


@dataclass
class NLL:
    """Negative log-likelihood per sample.

    ``bits_per_dim``: -log p / (3 H W ln 2), including the -3HW log(quant)
    discretisation term when dequantised.  ``official_bpp``: the number the official
    code logs, -objective / (H W ln 2) with its per-pixel -HW log(quant) term.
    """

    bits_per_dim: torch.Tensor
    official_bpp: torch.Tensor


class FlowNet(nn.Module):
    """The flow ``flowUpsamplerNet``: squeezes, transition steps, conditional steps, splits."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        f = cfg.flow
        self.scale = cfg.scale
        # conditioning channels [cond_split:] are the nearest-resized RRDB block stack
        self.cond_split = cfg.rrdb.nf if f.blocks else None
        self.layers = nn.ModuleList()
        self.strides: list[int] = []   # HR pixels per position at each layer's output
        affine_kw = dict(style=f.coupling, hidden=f.hidden_channels, n_hidden=f.n_hidden_layers,
                         k_hidden=f.kernel_hidden, eps=f.eps)
        C, stride = 3, 1
        for level in range(1, f.L + 1):
            fac = cfg.scale if f.squeeze == "once" else 2
            self._add(Squeeze(fac), stride * fac)
            C, stride = C * fac * fac, stride * fac
            for _ in range(f.n_transition):
                self._add(FlowStep(C, None, lu=f.lu), stride)
            for k in range(f.K):
                self._add(FlowStep(C, cfg.cond_channels, lu=f.lu, **affine_kw), stride)
                if f.split == "every6" and k % 6 == 0:
                    self._add(Split(C), stride)
                    C = C // 2
            if (f.split == "official" and level < f.L - 1) or (f.split == "every_level" and level < f.L):
                self._add(Split(C), stride)
                C = C // 2
        self.out_channels = C
        self.total_stride = stride
        self.latent_strides = [s for m, s in zip(self.layers, self.strides) if isinstance(m, Split)] + [stride]
        ratios = {self.feature_key(s) for m, s in zip(self.layers, self.strides)
                  if isinstance(m, FlowStep) and m.conditional}
        self.needed_features = sorted(ratios)

    def _add(self, layer, stride):
        self.layers.append(layer)
        self.strides.append(stride)

    def feature_key(self, stride: int) -> int:
        r = self.scale / stride
        if r == 0.5:
            return 0
        if r < 1 or r != int(r):
            raise ValueError(f"no conditioning feature at HR/{stride} for scale {self.scale}")
        return int(r)

    def cond_for(self, i: int, cond: Condition):
        if cond.caches is not None:
            return cond.caches[i]
        return cond.features[self.feature_key(self.strides[i])]

    def build_caches(self, cond: Condition, fused: bool = True) -> None:
        """Precompute every conditional step's :class:`CondCache`.

        ``fused`` (the default; used in eval mode without autograd): all conditional
        steps of a level see the same feature map, so their condition convolutions
        (fFeatures' first conv and the conditioning share of fAffine's first conv) run
        as one 3x3 convolution per level and chunk of steps, computed with Winograd
        F(2x2, 3x3), which also skips the products that vanish for the
        nearest-upsampled RRDB block channels.  Equal to the per-step
        :meth:`CondAffine.precompute` up to float rounding.
        """
        caches: list = [None] * len(self.layers)
        groups: dict[int, list[int]] = {}
        for i, m in enumerate(self.layers):
            if isinstance(m, FlowStep) and m.conditional:
                groups.setdefault(self.feature_key(self.strides[i]), []).append(i)
        fused = fused and not (torch.is_grad_enabled() or self.training)
        for key, idx in groups.items():
            ft = cond.features[key]
            if not fused:
                for i in idx:
                    caches[i] = self.layers[i].affine.precompute(ft)
                continue
            split = self.cond_split if key >= 2 else None
            n, c, h, w = ft.shape
            hid = self.layers[idx[0]].affine.fFeatures_net.head.weight.shape[0]
            # chunks of steps: ~64 MB of transient fFeatures outputs, but at least 4 steps
            # (each chunk repeats the input transform; wide products run faster)
            per_step = n * hid * h * w * ft.element_size()
            chunk = min(len(idx), max(4, (64 << 20) // max(per_step, 1)))
            chunk = -(-len(idx) // -(-len(idx) // chunk))       # balanced chunk sizes
            for c0 in range(0, len(idx), chunk):
                steps = idx[c0:c0 + chunk]
                u = ft.new_empty(16, 2 * hid * len(steps), c)
                for j, i in enumerate(steps):
                    winograd_weight(self.layers[i].affine.first_conv_weights(), u[:, 2 * hid * j:2 * hid * (j + 1)])
                # channels-last: h0 (odd entries) stays in the cache in the layout of the
                # coupling's head conv output at decode time (CondAffine._coupling_folded)
                outs = [torch.empty((n, hid, h, w), dtype=ft.dtype, device=ft.device,
                                    memory_format=torch.channels_last)
                        for _ in range(2 * len(steps))]
                conv3x3_winograd(ft, u, split, outs)
                del u
                for j, i in enumerate(steps):
                    h_ff, outs[2 * j] = outs[2 * j], None
                    caches[i] = self.layers[i].affine.cache_from_linear(h_ff, outs[2 * j + 1])
                    del h_ff
        cond.caches = caches

    def encode(self, x, cond: Condition):
        logdet = x.new_zeros(x.shape[0])
        eps = []
        for i, m in enumerate(self.layers):
            if isinstance(m, Split):
                (x, e), ld = m(x)
                eps.append(e)
            elif isinstance(m, FlowStep) and m.conditional:
                x, ld = m(x, self.cond_for(i, cond))
            else:
                x, ld = m(x)
            logdet = logdet + ld
        return eps + [x], logdet

    def decode(self, levels: list[torch.Tensor], cond: Condition, caches=None):
        eps = list(levels)
        x = eps.pop()
        logdet = x.new_zeros(x.shape[0])
        for i in range(len(self.layers) - 1, -1, -1):
            m = self.layers[i]
            if isinstance(m, Split):
                x, ld = m.inverse((x, eps.pop()))
            elif isinstance(m, FlowStep) and m.conditional:
                c = caches[i] if caches is not None else self.cond_for(i, cond)
                x, ld = m.inverse(x, c)
            else:
                x, ld = m.inverse(x)
            logdet = logdet + ld
        return x, logdet


class FlowSampler:
    """What SRFlow and HCFlow share on top of their own ``encode_condition``,
    ``draw_latents`` and ``decode``."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _cond(self, lr_or_cond) -> Condition:
        return lr_or_cond if isinstance(lr_or_cond, Condition) else self.encode_condition(lr_or_cond)

    @torch.inference_mode()
    def sample(self, lr, temperature: float = 0.8, seed: int = 0, n: int = 1,
               return_latents: bool = False):
        """``n`` SR samples of one LR image (or of a Condition); reproducible per seed."""
        cond = self._cond(lr)
        if cond.batch != 1:
            raise ValueError("sample() takes a single LR image; loop over a batch")
        lat = self.draw_latents(cond, temperature, seed, n)
        sr = self.decode(cond, lat)
        return (sr, lat) if return_latents else sr


class SRFlow(FlowSampler, nn.Module):
    """SRFlow (and the SRFlow-DA variants): ``RRDB`` encoder + ``flowUpsamplerNet``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.validate()
        r = cfg.rrdb
        self.RRDB = RRDBNet(r.nf, r.nb, r.gc, cfg.scale, r.in_nc, r.out_nc, tail=r.tail)
        self.flowUpsamplerNet = FlowNet(cfg)
        self.scale = cfg.scale
        self.freeze_encoder = False   # when True, encoder features are computed without grad

    # -- helpers ---------------------------------------------------------
    @property
    def latent_strides(self) -> list[int]:
        return list(self.flowUpsamplerNet.latent_strides)

    @property
    def total_stride(self) -> int:
        """HR pixels per position of the coarsest latent level (windows align to it)."""
        return self.flowUpsamplerNet.total_stride

    @property
    def lr_multiple(self) -> int:
        """LR height/width must be a multiple of this (padding handles the rest)."""
        return max(1, self.flowUpsamplerNet.total_stride // self.scale)

    def latent_shapes(self, hr_h: int, hr_w: int) -> list[tuple[int, int, int]]:
        shapes, C = [], 3
        for m, s in zip(self.flowUpsamplerNet.layers, self.flowUpsamplerNet.strides):
            if isinstance(m, Squeeze):
                C *= m.factor ** 2
            elif isinstance(m, Split):
                shapes.append((m.c_out, hr_h // s, hr_w // s))
                C = m.c_pass
        s = self.flowUpsamplerNet.total_stride
        return shapes + [(C, hr_h // s, hr_w // s)]

    # -- conditioning ------------------------------------------------------
    def encode_condition(self, lr: torch.Tensor, cache: bool | None = None) -> Condition:
        """Run the RRDB encoder once; the result can be passed to encode/decode/sample.

        With ``cache`` (default: when no gradient is being recorded) the LR-only parts
        of every conditional step are precomputed as well.
        """
        if lr.dim() != 4 or lr.shape[1] != 3:
            raise ValueError(f"LR must have shape (N, 3, h, w), got {tuple(lr.shape)}")
        if not torch.is_floating_point(lr):
            raise TypeError("LR must be a float tensor in [0, 1]")
        h, w = lr.shape[-2:]
        m = self.lr_multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            if h < 2 or w < 2:
                raise ValueError(f"LR image too small: {h}x{w}")
            lr = F.pad(lr, (0, pw, 0, ph), mode="reflect")
        blocks = list(self.cfg.flow.blocks)
        if self.freeze_encoder:
            with torch.no_grad():
                feats = self.RRDB.features(lr, self.flowUpsamplerNet.needed_features, blocks)
        else:
            feats = self.RRDB.features(lr, self.flowUpsamplerNet.needed_features, blocks)
        cond = Condition(lr_shape=(h, w), pad=(ph, pw), features=feats, batch=lr.shape[0],
                         hr_size=(h * self.scale, w * self.scale))
        if cache is None:
            cache = not torch.is_grad_enabled()
        if cache:
            with torch.no_grad():
                self.flowUpsamplerNet.build_caches(cond)
        return cond

    # -- directions --------------------------------------------------------
    def encode(self, hr: torch.Tensor, lr, dequantize: bool = False, quant: int = 32,
               generator: torch.Generator | None = None):
        """HR image -> (:class:`Latents`, logdet).  ``logdet`` is the per-sample
        log|det| of the flow's Jacobian (without the latents' Gaussian densities)."""
        cond = self._cond(lr)
        H, W = cond.hr_size
        if hr.shape[-2:] != (H, W):
            raise ValueError(f"HR size {tuple(hr.shape[-2:])} does not match LR x{self.scale} = {(H, W)}")
        ph, pw = cond.pad
        if ph or pw:
            hr = F.pad(hr, (0, pw * self.scale, 0, ph * self.scale), mode="reflect")
        if dequantize:
            u = torch.rand(hr.shape, generator=generator, device="cpu" if generator is not None else hr.device)
            hr = hr + (u.to(hr.device, hr.dtype) - 0.5) / quant
        levels, logdet = self.flowUpsamplerNet.encode(hr, cond)
        return Latents(levels, self.latent_strides, (H, W)), logdet

    def decode(self, lr, latents: Latents | list, region: tuple[int, int, int, int] | None = None):
        """Latents -> SR image (N, 3, H, W), cropped to the unpadded size.

        ``region = (y0, y1, x0, x1)`` in padded-HR pixels (multiples of the coarsest
        stride) decodes only that window (needs a cached condition); values near the
        window border differ from a full decode by the flow's receptive field.
        """
        cond = self._cond(lr)
        levels = latents.levels if isinstance(latents, Latents) else list(latents)
        if region is None:
            x, _ = self.flowUpsamplerNet.decode(levels, cond)
            H, W = cond.hr_size
            return x[..., :H, :W]
        if cond.caches is None:
            raise ValueError("region decoding needs a cached condition (encode_condition without grad)")
        y0, y1, x0, x1 = region
        strides = self.latent_strides
        lv = [t[..., y0 // s:y1 // s, x0 // s:x1 // s] for t, s in zip(levels, strides)]
        fn = self.flowUpsamplerNet
        caches = [None if c is None else c.crop(y0 // s, y1 // s, x0 // s, x1 // s)
                  for c, s in zip(cond.caches, fn.strides)]
        x, _ = fn.decode(lv, cond, caches=caches)
        return x

    def log_prob(self, hr, lr, dequantize=False, quant=32, generator=None):
        """(log p(y) in nats per sample, number of HR pixels) — differentiable."""
        cond = self._cond(lr)
        lat, logdet = self.encode(hr, cond, dequantize=dequantize, quant=quant, generator=generator)
        logp = logdet
        for t in lat.levels:
            logp = logp + gaussian_logp(t)
        H, W = lat.levels[-1].shape[-2] * lat.strides[-1], lat.levels[-1].shape[-1] * lat.strides[-1]
        return logp, H * W

    def nll(self, hr, lr, dequantize: bool = False, quant: int = 32, generator=None) -> NLL:
        """Per-sample NLL in bits per dim and the official bits-per-pixel number."""
        logp, pixels = self.log_prob(hr, lr, dequantize, quant, generator)
        dims = 3 * pixels
        q = math.log(quant) if dequantize else 0.0
        bpd = (-logp + dims * q) / (dims * math.log(2))
        bpp = (-logp + pixels * q) / (pixels * math.log(2))
        return NLL(bpd, bpp)

    # -- sampling ----------------------------------------------------------
    def draw_latents(self, cond: Condition, temperature: float, seed: int, n: int = 1) -> Latents:
        """Latents for ``n`` samples; sample k uses seed ``seed + k`` for every level,
        so any gallery item is reproducible on its own.  Drawn on the CPU (device
        independent), then moved to the model's device."""
        H, W = cond.hr_size
        ph, pw = cond.pad
        Hp, Wp = H + ph * self.scale, W + pw * self.scale
        shapes = self.latent_shapes(Hp, Wp)
        per = []
        for k in range(n):
            g = torch.Generator().manual_seed(int(seed) + k)
            per.append([torch.randn((1,) + s, generator=g) * float(temperature) for s in shapes])
        dev, dtype = self.device, next(self.parameters()).dtype
        levels = [torch.cat([p[i] for p in per]).to(dev, dtype) for i in range(len(shapes))]
        return Latents(levels, self.latent_strides, (H, W))

    def forward(self, hr, lr, quant: int = 32, weight_l1: float = 0.0, l1_batch: int = 0, generator=None):
        """Training objective: ``(loss, bits_per_dim, l1)`` where loss = mean NLL in
        bits/dim with uniform dequantization + ``weight_l1`` * L1 of the tau=0 decode
        (of the first ``l1_batch`` images, or all when 0)."""
        cond = self.encode_condition(lr, cache=False)
        bpd = self.nll(hr, cond, dequantize=True, quant=quant, generator=generator).bits_per_dim.mean()
        loss, l1 = bpd, None
        if weight_l1 > 0:
            n = hr.shape[0] if l1_batch <= 0 else min(l1_batch, hr.shape[0])
            c = cond if n == hr.shape[0] else cond.narrow(n)
            sr = self.decode(c, self.draw_latents(c, 0.0, 0, n))
            l1 = F.l1_loss(sr, hr[:n])
            loss = loss + weight_l1 * l1
        return loss, bpd, l1
