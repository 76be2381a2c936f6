"""What every model family offers: the :class:`FlowModel` protocol, the data it speaks in
(:class:`Latents`, :class:`Condition`, :class:`NLL`), and :class:`FlowModelBase`, the
code the families share.

Editing, the app's session, ``sr``, ``evaluate`` and ``train`` use models only through
this protocol; they never look at a model's class, config family or submodules.

Directions: ``encode`` maps an HR image to latents (y -> z), ``decode`` maps latents
back to an HR image (z -> y).  Images are float tensors in [0, 1], shape (N, 3, H, W).
Latents hold one tensor per level in *encode order* (finest first); every level is
N(0, I) under the model, so sampling at temperature tau draws every level from
N(0, tau^2).  Sizes: an LR whose sides are not multiples of ``lr_multiple`` is
reflect-padded at the bottom/right (:attr:`Condition.pad`); latents and region boxes
are in *padded* HR pixels, decoded images are cropped back to the unpadded size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.images import pad_to_multiple


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

    ``features`` maps a key of the model's choosing (SRFlow: the HR/LR ratio of a map,
    0 for LR/2) to its conditioning tensor; ``caches`` holds per-layer precomputed
    work once built (SRFlow, inference only).
    """

    lr_shape: tuple[int, int]          # unpadded LR (h, w)
    pad: tuple[int, int]               # reflect padding added to LR (bottom, right)
    features: dict
    caches: list | None = None
    batch: int = 1
    hr_size: tuple[int, int] = (0, 0)    # unpadded HR (H, W)

    @property
    def scale(self) -> int:
        return self.hr_size[0] // self.lr_shape[0] if self.lr_shape[0] else 1

    @property
    def padded_hr_size(self) -> tuple[int, int]:
        """(H, W) of the padded HR image: what latents and region boxes refer to."""
        s = self.scale
        return self.hr_size[0] + self.pad[0] * s, self.hr_size[1] + self.pad[1] * s

    def pad_hr(self, hr: torch.Tensor) -> torch.Tensor:
        """Reflect-pad an unpadded HR tensor (N, 3, H, W) to :attr:`padded_hr_size`."""
        ph, pw = self.pad
        if ph or pw:
            s = self.scale
            hr = F.pad(hr, (0, pw * s, 0, ph * s), mode="reflect")
        return hr

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


@dataclass
class TrainingLoss:
    """One batch's training objective (:meth:`FlowModel.training_loss`).

    ``loss``: what is minimised; ``reported``: the logged loss (bits/dim or the official
    NLL; the loss itself for objectives without one); ``l1``: the reconstruction L1 when
    it is part of the loss; ``parts``: further named terms, logged."""

    loss: torch.Tensor
    reported: torch.Tensor
    l1: torch.Tensor | None = None
    parts: dict = field(default_factory=dict)


@runtime_checkable
class FlowModel(Protocol):
    """A conditional flow between HR images and per-level latents, given an LR image.

    Geometry: ``scale`` (HR/LR), ``latent_strides`` (HR pixels per position of each
    level), ``total_stride`` (the coarsest stride: region boxes align to it),
    ``lr_multiple`` (LR sides are padded to multiples of it),
    ``latent_shapes(H, W)`` (per level (C, h, w) for a padded HR size).

    Capabilities: ``family`` (the registry name, :mod:`flow.models.registry`), ``kind``
    (``"sr"``; ``"rescaling"``: the model also has ``downscale``/``upscale``/
    ``rescale_roundtrip``), ``supports_region`` (``decode(region=...)`` and
    ``encode_window`` are *local*: they cost about the window, and are approximate
    near its border; without it they work on the whole image and crop, exactly),
    ``exact_reconstruction`` (``decode(encode(hr))`` gives ``hr`` back; HCFlow decodes
    from the LR instead of its encode's continuous top level, so it does not).
    """

    cfg: Any
    scale: int
    family: str
    supports_region: bool
    exact_reconstruction: bool

    @property
    def kind(self) -> str: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def latent_strides(self) -> list[int]: ...

    @property
    def total_stride(self) -> int: ...

    @property
    def lr_multiple(self) -> int: ...

    def latent_shapes(self, hr_h: int, hr_w: int) -> list[tuple[int, int, int]]: ...

    def encode_condition(self, lr: torch.Tensor, cache: bool | None = None) -> Condition:
        """The LR-only work (the encoder), reusable across samples, encodes and edits."""

    def encode(self, hr: torch.Tensor, lr, dequantize: bool = False, quant=None, generator=None):
        """HR -> (:class:`Latents`, per-sample Jacobian log-det)."""

    def decode(self, lr, latents, region=None) -> torch.Tensor:
        """Latents -> SR (N, 3, H, W); with ``region = (y0, y1, x0, x1)`` (padded-HR
        pixels, multiples of ``total_stride``) only that window."""

    def encode_window(self, hr_padded: torch.Tensor, cond: Condition, box) -> list[torch.Tensor]:
        """Per-level latents of the window ``box`` of a padded HR image."""

    def crop_condition(self, cond: Condition, box) -> Condition:
        """The condition of the padded-HR window ``box`` (for window decodes/encodes)."""

    def draw_order(self, n_levels: int):
        """The order (level indices) in which :meth:`draw_latents` draws the levels."""

    def draw_latents(self, cond: Condition, temperature: float, seed: int, n: int = 1) -> Latents:
        """Latents of ``n`` samples; sample k draws with ``Generator().manual_seed(seed + k)``."""

    def sample(self, lr, temperature: float = 0.8, seed: int = 0, n: int = 1, return_latents: bool = False):
        """``n`` SR samples of one LR image (or Condition), reproducible per seed."""

    def nll(self, hr, lr, dequantize: bool = False, quant=None, generator=None) -> NLL:
        """Per-sample negative log-likelihood of ``hr`` given ``lr``."""

    # -- training ------------------------------------------------------------------
    @property
    def encoder(self) -> nn.Module | None:
        """The separately pre-trainable LR encoder (its own L1 stage), or None."""

    encoder_prefix: str | None
    loss_in_forward: bool

    def set_encoder_trainable(self, trainable: bool) -> None: ...

    def prepare_training(self) -> None:
        """Adjust a freshly built model before its first training step."""

    def data_init(self, hr: torch.Tensor, lr: torch.Tensor) -> None:
        """One pass in train mode that sets the data-dependent (ActNorm) initialisation."""

    def training_loss(self, hr, lr, optim, generator=None, module=None) -> TrainingLoss:
        """The objective of one batch under the optimiser settings ``optim``; computed
        through ``module`` (e.g. a DDP wrapper of the model) when ``loss_in_forward``."""


class FlowModelBase(nn.Module):
    """The parts of :class:`FlowModel` the families share; subclasses set the class
    attributes and implement the rest."""

    family: str = ""
    supports_region: bool = False
    exact_reconstruction: bool = True
    encoder_prefix: str | None = None
    loss_in_forward: bool = True

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg.validate()
        self.scale = cfg.scale

    # -- properties --------------------------------------------------------------
    @property
    def kind(self) -> str:
        return "sr"

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def encoder(self) -> nn.Module | None:
        return None

    def draw_order(self, n_levels: int):
        """The order in which :meth:`draw_latents` draws the levels (encode order)."""
        return range(n_levels)

    # -- conditioning ----------------------------------------------------------------
    def _cond(self, lr_or_cond) -> Condition:
        return lr_or_cond if isinstance(lr_or_cond, Condition) else self.encode_condition(lr_or_cond)

    def _prepare_lr(self, lr: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        """Check an LR batch and reflect-pad it to multiples of ``lr_multiple``:
        (padded LR, unpadded (h, w), (pad bottom, pad right))."""
        if lr.dim() != 4 or lr.shape[1] != 3:
            raise ValueError(f"LR must have shape (N, 3, h, w), got {tuple(lr.shape)}")
        if not torch.is_floating_point(lr):
            raise TypeError("LR must be a float tensor in [0, 1]")
        h, w = lr.shape[-2:]
        lr, pad = pad_to_multiple(lr, self.lr_multiple)
        return lr, (h, w), pad

    def _condition(self, lr: torch.Tensor, hw, pad, features: dict) -> Condition:
        h, w = hw
        return Condition(lr_shape=(h, w), pad=pad, features=features, batch=lr.shape[0],
                         hr_size=(h * self.scale, w * self.scale))

    # -- windows (exact fallbacks: the whole image, cropped) -------------------------
    def crop_condition(self, cond: Condition, box) -> Condition:
        """Without local decoding a condition serves the whole image only: ``cond``."""
        return cond

    def decode_region(self, cond: Condition, levels: list, box) -> torch.Tensor:
        """The window ``box`` of the full decode (exact, not faster)."""
        y0, y1, x0, x1 = box
        return self.decode(cond, levels)[..., y0:y1, x0:x1]

    def encode_window(self, hr_padded: torch.Tensor, cond: Condition, box) -> list[torch.Tensor]:
        """Each level's part under ``box`` of the whole image's encoding (exact)."""
        y0, y1, x0, x1 = box
        lat, _ = self.encode(hr_padded, cond)
        return [t[..., y0 // s:y1 // s, x0 // s:x1 // s] for t, s in zip(lat.levels, lat.strides)]

    # -- sampling ------------------------------------------------------------------
    def draw_latents(self, cond: Condition, temperature: float, seed: int, n: int = 1) -> Latents:
        """Latents for ``n`` samples of the padded HR size: sample k draws every level
        (in :meth:`draw_order`) from ``torch.Generator().manual_seed(seed + k)``, so any
        gallery item is reproducible on its own.  Drawn on the CPU (device independent),
        then moved to the model's device and dtype."""
        shapes = self.latent_shapes(*cond.padded_hr_size)
        order = list(self.draw_order(len(shapes)))
        per = []
        for k in range(n):
            g = torch.Generator().manual_seed(int(seed) + k)
            drawn = [None] * len(shapes)
            for i in order:
                drawn[i] = torch.randn((1,) + tuple(shapes[i]), generator=g) * float(temperature)
            per.append(drawn)
        dev, dtype = self.device, self.dtype
        levels = [torch.cat([p[i] for p in per]).to(dev, dtype) for i in range(len(shapes))]
        return Latents(levels, self.latent_strides, tuple(cond.hr_size))

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

    # -- training defaults ---------------------------------------------------------------
    def set_encoder_trainable(self, trainable: bool) -> None:
        """No separate encoder: nothing to freeze."""

    def prepare_training(self) -> None:
        """Nothing to adjust."""

    @torch.no_grad()
    def data_init(self, hr: torch.Tensor, lr: torch.Tensor) -> None:
        self.train()
        self.nll(hr, lr, dequantize=True)
