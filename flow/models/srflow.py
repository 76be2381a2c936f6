"""The SRFlow model (and the SRFlow-DA variants): RRDB encoder + multi-level conditional flow.

A :class:`flow.models.protocol.FlowModel`.  Latents hold one tensor per level in
*encode order*: the standardised ``eps`` factored out by each split (finest first),
then the top-level ``z``.  Every conditional step's LR-only work is computed once per
LR image (:meth:`FlowNet.build_caches`), so samples and edits of one image decode the
z-dependent part only, and a window of it (:meth:`SRFlow.decode` with ``region``).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import FlowStep, Split, Squeeze, gaussian_logp
from ..layers.winograd import conv3x3_winograd, winograd_weight
from .config import ModelConfig
from .protocol import Condition, FlowModelBase, Latents, NLL, TrainingLoss
from .rrdb import RRDBNet


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


class SRFlow(FlowModelBase):
    """SRFlow (and the SRFlow-DA variants): ``RRDB`` encoder + ``flowUpsamplerNet``."""

    family = "srflow"
    supports_region = True
    encoder_prefix = "RRDB."

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        r = cfg.rrdb
        self.RRDB = RRDBNet(r.nf, r.nb, r.gc, cfg.scale, r.in_nc, r.out_nc, tail=r.tail)
        self.flowUpsamplerNet = FlowNet(cfg)
        self.freeze_encoder = False   # when True, encoder features are computed without grad

    # -- geometry --------------------------------------------------------
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
        lr, hw, pad = self._prepare_lr(lr)
        blocks = list(self.cfg.flow.blocks)
        if self.freeze_encoder:
            with torch.no_grad():
                feats = self.RRDB.features(lr, self.flowUpsamplerNet.needed_features, blocks)
        else:
            feats = self.RRDB.features(lr, self.flowUpsamplerNet.needed_features, blocks)
        cond = self._condition(lr, hw, pad, feats)
        if cache is None:
            cache = not torch.is_grad_enabled()
        if cache:
            with torch.no_grad():
                self.flowUpsamplerNet.build_caches(cond)
        return cond

    def crop_condition(self, cond: Condition, box) -> Condition:
        """The cached condition of the padded-HR window ``box = (y0, y1, x0, x1)``
        (multiples of the coarsest stride): every layer's cache cropped to it."""
        if cond.caches is None:
            raise ValueError("region decoding needs a cached condition (encode_condition without grad)")
        y0, y1, x0, x1 = box
        caches = [None if c is None else c.crop(y0 // s, y1 // s, x0 // s, x1 // s)
                  for c, s in zip(cond.caches, self.flowUpsamplerNet.strides)]
        return Condition(cond.lr_shape, cond.pad, {}, caches, cond.batch, cond.hr_size)

    # -- directions --------------------------------------------------------
    def encode(self, hr: torch.Tensor, lr, dequantize: bool = False, quant: int = 32,
               generator: torch.Generator | None = None):
        """HR image -> (:class:`Latents`, logdet).  ``logdet`` is the per-sample
        log|det| of the flow's Jacobian (without the latents' Gaussian densities)."""
        cond = self._cond(lr)
        H, W = cond.hr_size
        if hr.shape[-2:] != (H, W):
            raise ValueError(f"HR size {tuple(hr.shape[-2:])} does not match LR x{self.scale} = {(H, W)}")
        hr = cond.pad_hr(hr)
        if dequantize:
            u = torch.rand(hr.shape, generator=generator, device="cpu" if generator is not None else hr.device)
            hr = hr + (u.to(hr.device, hr.dtype) - 0.5) / quant
        levels, logdet = self.flowUpsamplerNet.encode(hr, cond)
        return Latents(levels, self.latent_strides, (H, W)), logdet

    def encode_window(self, hr_padded: torch.Tensor, cond: Condition, box) -> list[torch.Tensor]:
        """Encode the window ``box`` of a padded HR image with the cropped cached
        condition: per-level latents of that window (border positions are approximate)."""
        y0, y1, x0, x1 = box
        levels, _ = self.flowUpsamplerNet.encode(hr_padded[..., y0:y1, x0:x1], self.crop_condition(cond, box))
        return levels

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
        sub = self.crop_condition(cond, region)
        y0, y1, x0, x1 = region
        lv = [t[..., y0 // s:y1 // s, x0 // s:x1 // s] for t, s in zip(levels, self.latent_strides)]
        x, _ = self.flowUpsamplerNet.decode(lv, sub)
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

    # -- training ----------------------------------------------------------
    @property
    def encoder(self) -> nn.Module:
        return self.RRDB

    def set_encoder_trainable(self, trainable: bool) -> None:
        """Freeze (features computed without grad) or unfreeze the RRDB encoder."""
        self.freeze_encoder = not trainable
        for p in self.RRDB.parameters():
            p.requires_grad_(trainable)

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

    def training_loss(self, hr, lr, optim, generator=None, module=None) -> TrainingLoss:
        """``forward`` (through ``module``, e.g. a DDP wrapper) under ``optim``'s
        ``quant``, ``weight_l1`` and ``l1_batch``; reported: bits/dim."""
        fn = self if module is None else module
        loss, bpd, l1 = fn(hr, lr, quant=optim.quant, weight_l1=optim.weight_l1, l1_batch=optim.l1_batch,
                           generator=generator)
        return TrainingLoss(loss, bpd, l1)
