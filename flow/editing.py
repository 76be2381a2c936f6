"""Latent-space editing for SRFlow (paper §4; spec ``editing.md``).

Pure, seeded functions over :class:`flow.model.Latents`.  None of them mutates its
inputs; each returns new tensors.  Conventions:

* **Temperature** ``tau`` is a standard-deviation multiplier: latents are drawn
  from N(0, tau^2) (the official code's ``heat``).
* **Masks** are boolean HxW arrays in (unpadded) HR pixels.  :func:`level_masks`
  turns one into a per-level boolean map with the *footprint rule*: the latent at
  level position (i, j) with stride s covers HR pixels [s*i, s*i+s) x [s*j, s*j+s)
  and belongs to the region when that footprint touches the mask (max-pool with
  kernel = stride = s), optionally dilated by ``dilation`` positions per level.
* **Seeds**: region resampling draws with ``torch.Generator().manual_seed(seed)``
  a full-size N(0, 1) tensor per level (encode order, on the CPU) and keeps the
  masked entries, so a full-mask resample equals ``SRFlow.draw_latents`` with the
  same seed.  Normalization draws its new moments with
  ``numpy.random.default_rng(seed)`` (see :func:`normalize`).

Besides the latent operations this module holds the pieces the editing session
builds on: windowed decode/encode that only touch the part of the image an edit
can reach (:func:`edit_boxes`, :func:`decode_window`, :func:`encode_window`), the
exact LR-consistency projection (:func:`project_lr`), content transfer
(:func:`paste`, :func:`content_transfer`), style transfer (:func:`style_latents`,
:func:`style_transfer`), restoration (:func:`restore_latents`) and the
non-finite guard (:func:`guard_decode`).

Windowed decoding.  A latent edit changes the SR image mostly near the edited
footprints.  :func:`edit_boxes` takes the bounding box of the changed latents'
footprints, widens it by ``margin`` HR pixels (the *splice* box, which replaces
the current image) and by another ``margin`` (the *window* actually decoded with
``SRFlow.decode(region=...)``, aligned to the coarsest stride).  The window's
border rows are wrong (the convolutions see zero padding instead of the
neighbouring content), and the edit's true effect beyond the splice box is
dropped; both decay with distance.  Measured whole-image max error of the
shortcut vs. a full decode of the same latents (float images, 1/255 units;
region resample of a 64x64 mask, dilation 1, tau 0.8, 512x512 HR):

=========================================  =====  =====  =====  =====  =====
margin (HR px)                                 8     16     24     32     48
=========================================  =====  =====  =====  =====  =====
trained fixture (tiny_4x, K=2)              2.35   0.27  0.058  0.008  0.000
studio_4x, randomized weights               1.36  0.015  0.002  0.000  0.000
srflow_df2k_4x, randomized (256x256 HR)     21.4    3.7   0.10  0.012  0.006
=========================================  =====  =====  =====  =====  =====

so ``DEFAULT_MARGIN = 32`` keeps it below 1/255 with a wide safety factor.  As a
guard for models that spread further, the session also checks the seam: if the
window decode differs from the current image by more than 0.5/255 just outside
the splice box, it doubles the margin and decodes again
(``EditSession._decode_edit``).

HCFlow models (``flow.hcflow.HCFlow``, ``supports_region = False``) have no window
decode: a change of a coarse latent changes the coarse image ``y_l`` and, through
the conditioning networks' large receptive fields, the whole SR image; only the
finest level's latents act locally.  :func:`decode_window`, :func:`encode_window`
and :func:`content_transfer` then work on the whole image (exact, not faster), and
the session re-decodes the whole image for every region edit.  All the latent
operations above (masks, resampling, normalization, ...) work unchanged: HCFlow's
latents are :class:`Latents` with one tensor per level (strides 2, 4, ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .imresize import imresize, imresize_torch, resize_matrix
from .model import Condition, Latents

#: Decoded values (in [0, 1] image units) beyond this magnitude count as exploding.
BOUND = 10.0
#: Default splice margin of windowed decoding, in HR pixels (see the module docstring).
DEFAULT_MARGIN = 32
MODES = ("global", "local", "spatial")


# ----------------------------------------------------------------------------
# masks
# ----------------------------------------------------------------------------

def _mask_tensor(mask) -> torch.Tensor:
    if isinstance(mask, torch.Tensor):
        m = mask.detach().cpu()
    else:
        m = torch.from_numpy(np.ascontiguousarray(np.asarray(mask)))
    if m.dim() != 2:
        raise ValueError(f"mask must be a 2-D HxW array, got shape {tuple(m.shape)}")
    return m.bool() if m.dtype != torch.bool else m


def _geometry(lat, shapes=None) -> tuple[list[int], list[tuple[int, int]]]:
    if isinstance(lat, Latents):
        return list(lat.strides), [tuple(t.shape[-2:]) for t in lat.levels]
    if shapes is None:
        raise ValueError("give Latents, or strides together with per-level (h, w) shapes")
    return [int(s) for s in lat], [tuple(int(v) for v in s[-2:]) for s in shapes]


def level_masks(mask_hr, lat, shapes=None, dilation=0) -> list[torch.Tensor]:
    """Per-level boolean masks (h_l, w_l) of a boolean HR mask.

    ``lat``: a :class:`Latents` (strides and shapes are taken from it), or a list
    of strides with ``shapes`` a list of per-level (h, w) (or (C, h, w)).  The mask
    may have the unpadded HR size (it is padded with False to the latents' padded
    size) or the padded size.  ``dilation``: an int or one int per level, in latent
    positions of that level.  Masks are returned on the latents' device.
    """
    strides, hw = _geometry(lat, shapes)
    m = _mask_tensor(mask_hr)
    Hp, Wp = hw[0][0] * strides[0], hw[0][1] * strides[0]
    for (h, w), s in zip(hw, strides):
        if (h * s, w * s) != (Hp, Wp):
            raise ValueError("latent levels do not describe one image size")
    H, W = m.shape
    if H > Hp or W > Wp:
        raise ValueError(f"mask {H}x{W} is larger than the image ({Hp}x{Wp})")
    if isinstance(lat, Latents) and (H, W) not in (tuple(lat.hr_size), (Hp, Wp)):
        raise ValueError(f"mask is {H}x{W} but the image is {lat.hr_size[0]}x{lat.hr_size[1]}")
    mf = torch.zeros(1, 1, Hp, Wp)
    mf[0, 0, :H, :W] = m.float()
    dil = list(dilation) if isinstance(dilation, (list, tuple)) else [int(dilation)] * len(strides)
    if len(dil) != len(strides):
        raise ValueError("give one dilation per level")
    out = []
    dev = lat.levels[0].device if isinstance(lat, Latents) else torch.device("cpu")
    for s, d in zip(strides, dil):
        lm = F.max_pool2d(mf, kernel_size=s, stride=s) if s > 1 else mf
        if d > 0:
            lm = F.max_pool2d(lm, kernel_size=2 * d + 1, stride=1, padding=d)
        out.append((lm[0, 0] > 0).to(dev))
    return out


def count_masked(masks: list[torch.Tensor]) -> tuple[int, int]:
    """(number of latent positions, number of levels with any) in level masks."""
    n = [int(m.sum()) for m in masks]
    return sum(n), sum(1 for v in n if v)


def _check_masks(lat: Latents, masks):
    if len(masks) != len(lat.levels):
        raise ValueError(f"{len(masks)} level masks for {len(lat.levels)} latent levels")
    for m, t in zip(masks, lat.levels):
        if tuple(m.shape) != tuple(t.shape[-2:]):
            raise ValueError(f"level mask {tuple(m.shape)} does not match latent level {tuple(t.shape)}")


# ----------------------------------------------------------------------------
# region resampling
# ----------------------------------------------------------------------------

def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_tau(temperature) -> float:
    t = float(temperature)
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    return t


def resample_region(lat: Latents, masks, temperature: float, seed: int) -> Latents:
    """Replace the latents inside the level masks by fresh N(0, tau^2) draws.

    Per level (encode order) a full-size N(0, 1) tensor is drawn from
    ``torch.Generator().manual_seed(seed)`` on the CPU and scaled by ``tau``; the
    masked entries (all channels, every batch item) are taken from it.
    """
    _check_masks(lat, masks)
    tau, seed = _check_tau(temperature), _check_seed(seed)
    g = torch.Generator().manual_seed(seed)
    levels = []
    for t, m in zip(lat.levels, masks):
        fresh = (torch.randn(tuple(t.shape), generator=g) * tau).to(t.device, t.dtype)
        levels.append(torch.where(m.to(t.device)[None, None], fresh, t))
    return Latents(levels, list(lat.strides), tuple(lat.hr_size))


def take_region(lat: Latents, other: Latents, masks) -> Latents:
    """``lat`` with the entries inside the level masks copied from ``other``."""
    _check_masks(lat, masks)
    if len(other.levels) != len(lat.levels) or any(
            a.shape[1:] != b.shape[1:] for a, b in zip(lat.levels, other.levels)):
        raise ValueError("the two latents describe different images/models")
    levels = [torch.where(m.to(a.device)[None, None], b.to(a.device, a.dtype), a)
              for a, b, m in zip(lat.levels, other.levels, masks)]
    return Latents(levels, list(lat.strides), tuple(lat.hr_size))


# ----------------------------------------------------------------------------
# latent normalization (eqs. 6-7)
# ----------------------------------------------------------------------------

#: A collection whose (unbiased) std is below this counts as constant.
DEGENERATE_STD = 1e-6


@dataclass
class NormInfo:
    """What :func:`normalize` did.  ``draws``: per group, in draw order, a dict with
    ``group`` (level index, or -1 for global), ``N`` (collection size), and the drawn
    ``mu_hat`` and ``var_hat`` arrays (one entry per collection)."""

    mode: str
    collections: int = 0
    skipped: int = 0          # collections with N < 2 (left unchanged, no draws)
    degenerate: int = 0       # constant collections (set to their drawn mean)
    draws: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def draw_moments(rng: np.random.Generator, M: int, N: int, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 6 for ``M`` collections of size ``N``: ``mu_hat ~ N(0, tau^2/N)``,
    ``var_hat ~ Gamma(shape=(N-1)/2, scale=2 tau^2/(N-1))`` (numpy, in that order)."""
    mu = rng.normal(0.0, tau / math.sqrt(N), size=M)
    var = rng.gamma((N - 1) / 2.0, 2.0 * tau * tau / (N - 1), size=M)
    return mu, var


def _normalize_rows(rows: torch.Tensor, rng, tau: float, info: NormInfo, group: int) -> torch.Tensor:
    """Eq. 7 on every row (a collection) of a (M, N) tensor; float64 maths."""
    M, N = rows.shape
    if M == 0:
        return rows
    if N < 2:
        info.skipped += M
        info.notes.append(f"group {group}: collections of size {N} < 2 left unchanged")
        return rows
    x = rows.double()
    mu_t = x.mean(dim=1, keepdim=True)
    sd_t = x.std(dim=1, unbiased=True, keepdim=True)
    mu_h, var_h = draw_moments(rng, M, N, tau)
    info.draws.append({"group": group, "N": N, "mu_hat": mu_h, "var_hat": var_h})
    info.collections += M
    mu_h = torch.from_numpy(mu_h).to(x.device)[:, None]
    sd_h = torch.from_numpy(np.sqrt(var_h)).to(x.device)[:, None]
    const = sd_t <= DEGENERATE_STD
    n_const = int(const.sum())
    if n_const:
        info.degenerate += n_const
        info.notes.append(f"group {group}: {n_const} constant collection(s) set to their drawn mean")
    factor = torch.where(const, torch.zeros_like(sd_t), sd_h / torch.where(const, torch.ones_like(sd_t), sd_t))
    return (factor * (x - mu_t) + mu_h).to(rows.dtype)


def normalize(lat: Latents, mode: str = "local", temperature: float = 0.8, seed: int = 0,
              masks=None, return_info: bool = False):
    """Latent normalization, SRFlow eqs. 6-7.

    Every collection Z of N values (N >= 2) with mean m and unbiased std s gets a new
    mean ``mu_hat ~ N(0, tau^2/N)`` and variance ``var_hat ~ Gamma((N-1)/2,
    scale=2 tau^2/(N-1))`` -- the distributions of the sample mean and unbiased
    sample variance of N iid N(0, tau^2) draws -- and becomes
    ``(sqrt(var_hat)/s) (Z - m) + mu_hat``, so afterwards its mean is exactly
    ``mu_hat`` and its unbiased variance exactly ``var_hat``.

    Collections (per batch item):

    * ``'global'``: all entries of all levels together (one collection);
    * ``'local'``: per level and position (i, j), the vector over channels;
    * ``'spatial'``: per level and channel k, the map over positions.

    With ``masks`` (level masks), only masked entries form the collections and only
    they change: local collections exist only at masked positions, spatial and
    global ones contain only masked positions.

    Draws: ``rng = numpy.random.default_rng(seed)``; groups are visited in order
    (local/spatial: levels in encode order; global: one group) and each group draws
    ``mu_hat`` for all its M collections, then ``var_hat`` (:func:`draw_moments`).
    Collections are ordered batch-major, then row-major positions (local) or
    channels (spatial).  Guards: groups whose collections have N < 2 are left
    unchanged and draw nothing; a collection with ``s <= 1e-6`` (constant) is set to
    ``mu_hat`` everywhere.  Both are counted in the :class:`NormInfo` returned with
    ``return_info=True``.
    """
    if mode not in MODES:
        raise ValueError(f"normalization mode must be one of {MODES}, got {mode!r}")
    tau, seed = _check_tau(temperature), _check_seed(seed)
    if masks is not None:
        _check_masks(lat, masks)
    rng = np.random.default_rng(seed)
    info = NormInfo(mode)
    B = lat.batch
    out = []
    if mode == "global":
        parts, sizes = [], []
        for i, t in enumerate(lat.levels):
            if masks is None:
                p = t.reshape(B, -1)
            else:
                p = t[:, :, masks[i].to(t.device)].reshape(B, -1)
            parts.append(p)
            sizes.append(p.shape[1])
        rows = _normalize_rows(torch.cat(parts, dim=1), rng, tau, info, -1)
        chunks = torch.split(rows, sizes, dim=1)
        for i, (t, c) in enumerate(zip(lat.levels, chunks)):
            if masks is None:
                out.append(c.reshape(t.shape).contiguous())
            else:
                y = t.clone()
                m = masks[i].to(t.device)
                y[:, :, m] = c.reshape(B, t.shape[1], -1)
                out.append(y)
    else:
        for i, t in enumerate(lat.levels):
            Bc, C, h, w = t.shape
            m = masks[i].to(t.device) if masks is not None else torch.ones(h, w, dtype=torch.bool, device=t.device)
            if mode == "local":
                v = t.permute(0, 2, 3, 1)[:, m]                      # (B, P, C)
                P = v.shape[1]
                rows = _normalize_rows(v.reshape(Bc * P, C), rng, tau, info, i)
                y = t.permute(0, 2, 3, 1).clone()
                y[:, m] = rows.reshape(Bc, P, C)
                out.append(y.permute(0, 3, 1, 2).contiguous())
            else:
                v = t[:, :, m]                                        # (B, C, P)
                P = v.shape[2]
                rows = _normalize_rows(v.reshape(Bc * C, P), rng, tau, info, i)
                y = t.clone()
                y[:, :, m] = rows.reshape(Bc, C, P)
                out.append(y)
    res = Latents(out, list(lat.strides), tuple(lat.hr_size))
    return (res, info) if return_info else res


def restore_latents(lat: Latents, temperature: float = 0.8, seed: int = 0, masks=None) -> Latents:
    """Restoration (§4.5): spatial normalization (seed) then local (seed + 1)."""
    z = normalize(lat, "spatial", temperature, seed, masks)
    return normalize(z, "local", temperature, _check_seed(seed) + 1, masks)


# ----------------------------------------------------------------------------
# hard LR consistency
# ----------------------------------------------------------------------------

@lru_cache(maxsize=32)
def _projector(n_hr: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, A^T (A A^T)^-1) for one dimension's MATLAB-bicubic downscale matrix
    (cached; callers must not modify them)."""
    A = resize_matrix(n_hr, scale=1.0 / scale)
    P = np.linalg.solve(A @ A.T, A).T         # (A A^T) is symmetric
    return np.array(A), P


def project_lr(sr, lr, scale: int, alpha: float = 1.0):
    """Exact minimum-norm projection of ``sr`` onto {Y : D(Y) = lr}, blended by ``alpha``.

    ``D(Y) = A_h Y A_w^T`` per channel is the float MATLAB-bicubic downscale by
    ``scale``; the correction is ``A_h^T (A_h A_h^T)^-1 (lr - D(Y)) (A_w A_w^T)^-1 A_w``
    and the result is ``Y + alpha * correction`` (so ``alpha = 1`` gives
    ``D(result) == lr`` up to float rounding).  Inputs: float torch tensors
    (..., H, W) / (..., h, w), or float numpy arrays HxWxC / hxwxC (returned in the
    same kind and dtype).  No clipping.
    """
    is_np = isinstance(sr, np.ndarray)
    if is_np:
        y = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(sr, dtype=np.float64), -1, 0)))
        x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(lr, dtype=np.float64), -1, 0)))
        dtype = sr.dtype
    else:
        dtype = sr.dtype
        y, x = sr.double(), lr.to(sr.device).double()
    H, W = y.shape[-2:]
    Ah, Ph = _projector(int(H), int(scale))
    Aw, Pw = _projector(int(W), int(scale))
    if tuple(x.shape[-2:]) != (Ah.shape[0], Aw.shape[0]):
        raise ValueError(f"LR {tuple(x.shape[-2:])} does not match D(SR) {(Ah.shape[0], Aw.shape[0])}")
    dev = y.device
    Ah_t, Ph_t = torch.from_numpy(Ah).to(dev), torch.from_numpy(Ph).to(dev)
    Aw_t, Pw_t = torch.from_numpy(Aw).to(dev), torch.from_numpy(Pw).to(dev)
    r = x - Ah_t @ y @ Aw_t.T
    out = y + float(alpha) * (Ph_t @ r @ Pw_t.T)
    if is_np:
        return np.moveaxis(out.numpy(), 0, -1).astype(dtype)
    return out.to(dtype)


# ----------------------------------------------------------------------------
# windowed decode / encode
# ----------------------------------------------------------------------------

def masks_bbox(masks, strides) -> tuple[int, int, int, int] | None:
    """HR-pixel bounding box (y0, y1, x0, x1) of the footprints of masked latents."""
    box = None
    for m, s in zip(masks, strides):
        if not bool(m.any()):
            continue
        ys = torch.nonzero(m.any(dim=1)).flatten()
        xs = torch.nonzero(m.any(dim=0)).flatten()
        b = (int(ys[0]) * s, (int(ys[-1]) + 1) * s, int(xs[0]) * s, (int(xs[-1]) + 1) * s)
        box = b if box is None else (min(box[0], b[0]), max(box[1], b[1]), min(box[2], b[2]), max(box[3], b[3]))
    return box


def edit_boxes(bbox, padded_hw, align: int, margin: int = DEFAULT_MARGIN):
    """(window, splice) boxes (y0, y1, x0, x1) in padded-HR pixels for an edit whose
    changed latents' footprints span ``bbox``.  ``splice`` = bbox widened by
    ``margin`` (clipped to the image), ``window`` = splice widened by ``margin`` and
    aligned outwards to multiples of ``align`` (the coarsest stride)."""
    Hp, Wp = padded_hw
    y0, y1, x0, x1 = bbox
    splice = (max(0, y0 - margin), min(Hp, y1 + margin), max(0, x0 - margin), min(Wp, x1 + margin))
    m2 = 2 * margin
    win = (max(0, (y0 - m2) // align * align), min(Hp, -(-(y1 + m2) // align) * align),
           max(0, (x0 - m2) // align * align), min(Wp, -(-(x1 + m2) // align) * align))
    return win, splice


def supports_region(model) -> bool:
    """Whether ``model.decode(region=...)`` exists (SRFlow: yes; HCFlow: no, its coarse
    latents act on the whole image).  Models without it take the full-image
    fallbacks below."""
    return bool(getattr(model, "supports_region", True))


def window_conditions(model, cond: Condition, box) -> list | None:
    """The cached per-layer conditioning of ``cond`` cropped to a padded-HR box.
    For a model without region support: ``cond.caches`` unchanged (its condition is
    only usable for the whole image)."""
    if not supports_region(model):
        return cond.caches
    if cond.caches is None:
        raise ValueError("windowed decoding needs a cached condition (encode_condition without grad)")
    y0, y1, x0, x1 = box
    fn = model.flowUpsamplerNet
    return [None if c is None else c.crop(y0 // s, y1 // s, x0 // s, x1 // s)
            for c, s in zip(cond.caches, fn.strides)]


def decode_window(model, cond: Condition, lat: Latents, box) -> torch.Tensor:
    """``model.decode`` of the padded-HR window ``box`` (the whole padded image when
    the box covers it): float (N, 3, y1 - y0, x1 - x0), not clamped.  A model
    without region support decodes the whole image and returns the box of it
    (exact, but no faster)."""
    box = tuple(int(v) for v in box)
    if not supports_region(model):
        y0, y1, x0, x1 = box
        return model.decode(cond, lat)[..., y0:y1, x0:x1]
    return model.decode(cond, lat, region=box)


def encode_window(model, cond: Condition, hr_padded: torch.Tensor, box) -> list[torch.Tensor]:
    """Encode the window ``box`` of a padded HR image with the cropped cached
    condition: per-level latents of that window (border positions are approximate).
    A model without region support encodes the whole image and returns each
    level's part under the box (exact)."""
    y0, y1, x0, x1 = box
    if not supports_region(model):
        lat, _ = model.encode(hr_padded, cond)
        return [t[..., y0 // s:y1 // s, x0 // s:x1 // s] for t, s in zip(lat.levels, lat.strides)]
    sub = Condition(cond.lr_shape, cond.pad, {}, window_conditions(model, cond, box), cond.batch,
                    cond.hr_size)
    levels, _ = model.flowUpsamplerNet.encode(hr_padded[..., y0:y1, x0:x1], sub)
    return levels


def pad_hr(model, cond: Condition, hr: torch.Tensor) -> torch.Tensor:
    """Reflect-pad an unpadded HR tensor like ``SRFlow.encode`` does."""
    ph, pw = cond.pad
    if ph or pw:
        hr = F.pad(hr, (0, pw * model.scale, 0, ph * model.scale), mode="reflect")
    return hr


# ----------------------------------------------------------------------------
# non-finite guard
# ----------------------------------------------------------------------------

def bad_pixels(x: torch.Tensor, bound: float = BOUND) -> torch.Tensor:
    """(N, H, W) True where any channel is NaN/Inf or beyond +-bound."""
    return (~torch.isfinite(x) | (x.abs() > bound)).any(dim=1)


def guard_decode(decode, lat: Latents, box, fallback: torch.Tensor | None = None, retries: int = 3,
                 factor: float = 0.5, bound: float = BOUND):
    """Decode with the non-finite guard.

    ``decode(lat)`` returns the float image of the padded-HR ``box``.  Pixels that
    are NaN/Inf or beyond ``bound`` trigger up to ``retries`` retries in which the
    latents whose footprints touch them (dilated by one position) are multiplied
    by ``factor`` -- the same draws at a ``factor`` times lower temperature.  What
    is still bad afterwards is replaced by ``fallback`` (an image of the box, e.g.
    the bicubic upscaling of the LR; mid-grey when None), and everything is
    clamped to +-bound.  Returns ``(image, latents, warnings)``; the latents are
    the ones actually decoded, so the session state stays consistent.
    """
    y0, y1, x0, x1 = box
    x = decode(lat)
    warnings: list[str] = []
    bad = bad_pixels(x, bound)
    if not bool(bad.any()):
        return x, lat, warnings
    first = int(bad.sum())
    strides = list(lat.strides)
    shapes = [tuple(t.shape[-2:]) for t in lat.levels]
    Hp, Wp = shapes[0][0] * strides[0], shapes[0][1] * strides[0]
    tries = 0
    while bool(bad.any()) and tries < retries:
        tries += 1
        levels = [t.clone() for t in lat.levels]
        for b in range(x.shape[0]):
            if not bool(bad[b].any()):
                continue
            full = torch.zeros(Hp, Wp, dtype=torch.bool)
            full[y0:y1, x0:x1] = bad[b].cpu()
            for t, m in zip(levels, level_masks(full, strides, shapes, dilation=1)):
                m = m.to(t.device)
                t[b][:, m] = t[b][:, m] * factor
        lat = Latents(levels, strides, tuple(lat.hr_size))
        x = decode(lat)
        bad = bad_pixels(x, bound)
    left = int(bad.sum())
    msg = (f"decode produced {first} non-finite or exploding pixel(s); "
           f"retried the affected latents at {factor:g}x temperature {tries} time(s)")
    if left:
        fb = fallback if fallback is not None else torch.full_like(x, 0.5)
        fb = fb.to(x.device, x.dtype).expand_as(x)
        x = torch.where(bad[:, None], fb, torch.nan_to_num(x, nan=0.0).clamp(-bound, bound))
        msg += f"; {left} pixel(s) still bad were replaced by the bicubic upscaling of the LR"
    else:
        msg += " (fixed)"
    warnings.append(msg)
    return x, lat, warnings


# ----------------------------------------------------------------------------
# content transfer
# ----------------------------------------------------------------------------

def paste(target: np.ndarray, source: np.ndarray, src_box, dst_yx, dst_hw):
    """Paste ``source[y0:y1, x0:x1]`` resized (MATLAB bicubic) to ``dst_hw`` into a
    copy of ``target`` at ``dst_yx`` (the part outside the target is cut off).
    Returns ``(pasted uint8, mask bool HxW of the pasted pixels)``."""
    Hs, Ws = source.shape[:2]
    try:
        y0, x0, y1, x1 = (int(v) for v in src_box)
        dy, dx = (int(v) for v in dst_yx)
        dh, dw = (int(v) for v in dst_hw)
    except (TypeError, ValueError):
        raise ValueError("src_box must be (y0, x0, y1, x1), dst_yx (y, x) and dst_hw (h, w) integers") from None
    if not (0 <= y0 < y1 <= Hs and 0 <= x0 < x1 <= Ws):
        raise ValueError(f"source box (y0={y0}, x0={x0}, y1={y1}, x1={x1}) is empty or outside the "
                         f"source image ({Hs}x{Ws})")
    if dh < 1 or dw < 1:
        raise ValueError(f"paste size must be positive, got {dh}x{dw}")
    H, W = target.shape[:2]
    ty0, tx0, ty1, tx1 = max(0, dy), max(0, dx), min(H, dy + dh), min(W, dx + dw)
    if ty0 >= ty1 or tx0 >= tx1:
        raise ValueError(f"paste position {dy},{dx} with size {dh}x{dw} lies outside the image ({H}x{W})")
    crop = source[y0:y1, x0:x1]
    patch = crop if crop.shape[:2] == (dh, dw) else imresize(crop, output_shape=(dh, dw))
    out = target.copy()
    out[ty0:ty1, tx0:tx1] = patch[ty0 - dy:ty1 - dy, tx0 - dx:tx1 - dx]
    mask = np.zeros((H, W), dtype=bool)
    mask[ty0:ty1, tx0:tx1] = True
    return out, mask


def content_transfer(model, cond: Condition, lat: Latents, pasted: torch.Tensor, mask_hr,
                     mode: str = "local", temperature: float = 0.8, seed: int = 0, dilation: int = 1,
                     margin: int = DEFAULT_MARGIN):
    """Harmonize a paste (§4.4).  ``pasted``: float (1, 3, H, W) image with the paste;
    ``mask_hr``: the pasted pixels.  The latents whose footprints touch the paste
    (dilated by ``dilation``) are replaced by the encoding of ``pasted`` (encoded in
    a window around them, with ``margin``; the whole image for a model without
    region support, e.g. HCFlow) and normalized there (``mode``, ``tau``,
    ``seed``, restricted to those latents); all other latents are kept.
    Returns ``(new latents, level masks)``."""
    masks = level_masks(mask_hr, lat, dilation=dilation)
    bbox = masks_bbox(masks, lat.strides)
    if bbox is None:
        raise ValueError("the paste region is empty")
    Hp, Wp = masks[0].shape[0] * lat.strides[0], masks[0].shape[1] * lat.strides[0]
    if supports_region(model):
        win, _ = edit_boxes(bbox, (Hp, Wp), model.total_stride, margin)
    else:                                   # no local encode: the whole image (exact)
        win = (0, Hp, 0, Wp)
    hp = pad_hr(model, cond, pasted.to(lat.levels[0].device, lat.levels[0].dtype))
    enc = encode_window(model, cond, hp, win)
    y0, y1, x0, x1 = win
    levels = []
    for t, e, s in zip(lat.levels, enc, lat.strides):
        full = t.clone()
        full[..., y0 // s:y1 // s, x0 // s:x1 // s] = e
        levels.append(full)
    encoded = Latents(levels, list(lat.strides), tuple(lat.hr_size))
    mixed = take_region(lat, encoded, masks)
    return normalize(mixed, mode, temperature, seed, masks), masks


# ----------------------------------------------------------------------------
# style transfer
# ----------------------------------------------------------------------------

def fit_image(img: np.ndarray, H: int, W: int) -> np.ndarray:
    """Resize (MATLAB bicubic, keeping the aspect ratio) so that the image covers
    HxW, then centre-crop to HxW."""
    h, w = img.shape[:2]
    if (h, w) == (H, W):
        return img.copy()
    s = max(H / h, W / w)
    nh, nw = max(H, int(math.ceil(h * s - 1e-9))), max(W, int(math.ceil(w * s - 1e-9)))
    r = imresize(img, output_shape=(nh, nw))
    y0, x0 = (nh - H) // 2, (nw - W) // 2
    return np.ascontiguousarray(r[y0:y0 + H, x0:x0 + W])


def style_latents(model, style_hr: torch.Tensor, style_lr: torch.Tensor | None = None) -> Latents:
    """z~ = f(y~; D_s(y~)): a style HR image (1, 3, H, W) encoded with its own LR
    (``style_lr``, or the float MATLAB-bicubic downscale when None)."""
    if style_lr is None:
        style_lr = imresize_torch(style_hr, 1.0 / model.scale).clamp(0, 1)
    cond = model.encode_condition(style_lr)
    lat, _ = model.encode(style_hr, cond)
    return lat


def style_transfer(lat: Latents, style: Latents, masks=None) -> Latents:
    """LR-consistent style transfer (§4.2): the style latents everywhere, or only
    inside the level masks (elsewhere the current latents)."""
    if masks is None:
        if len(style.levels) != len(lat.levels) or any(
                a.shape[1:] != b.shape[1:] for a, b in zip(lat.levels, style.levels)):
            raise ValueError("style latents do not match the image")
        return style.clone()
    return take_region(lat, style, masks)
