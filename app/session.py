"""The editing session: one LR image, its encoder condition, a gallery of samples, the
current latents/image, a bounded undo/redo history and session files.

No Gradio here; the UI (``app/ui.py``) wraps :class:`EditSession`.  Images crossing
this API are uint8 HxWx3 numpy arrays; bad arguments raise ``ValueError`` with a
message meant for the user.

How an edit is computed (see :mod:`flow.editing`):

* the RRDB encoder runs **once** per LR image (``encode_condition`` with the
  per-layer caches); every sample and edit reuses it;
* an edit that changes latents only near a mask decodes just a window around the
  changed latents (``SRFlow.decode(region=...)``) and splices its centre into the
  current image (``splice_margin`` HR pixels around the changed footprints; the
  window is one more margin wider).  Edits that touch most of the image decode the
  whole image;
* models without a region decode (HCFlow: ``supports_region = False``; a coarse
  latent changes the whole image, only the finest level's latents are local)
  decode the whole image for every edit; results then say so in
  ``OpResult.notes`` (see :data:`GLOBAL_EDIT_NOTE`);
* the raw decoded image (float) is kept; the shown image is
  ``uint8(clip(P(raw)))`` where ``P`` is the optional exact LR projection with
  strength ``lr_projection`` (0 = off, the default);
* every decode goes through the non-finite guard (:func:`flow.editing.guard_decode`);
  what it did is reported in ``OpResult.warnings``.

Temperature is a standard-deviation multiplier (latents ~ N(0, tau^2)).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from flow import editing as E
from flow.checkpoint import model_identity
from flow.data import make_lr, to_tensor
from flow.imresize import imresize
from flow.metrics import lr_psnr, ssim
from flow.model import Latents

SESSION_FORMAT = "srflow-studio-session/1"
#: Metrics are capped here (an exactly LR-consistent image has infinite LR-PSNR).
PSNR_CAP = 100.0
MIN_LR_SIDE = 4
#: Edits whose decode window covers more than this fraction of the image decode it whole.
FULL_DECODE_FRACTION = 0.6
#: Max |window - current| (in [0, 1] units) tolerated just outside the splice box
#: before the margin is doubled (see EditSession._decode_edit).
SEAM_TOLERANCE = 0.5 / 255
#: Told with every region edit of a model without a local decode (HCFlow).
GLOBAL_EDIT_NOTE = ("this model (HCFlow) has no local decode: a region edit re-decodes the whole image; only "
                    "its finest latent level acts locally, the coarser latents under the mask also change "
                    "pixels around it (in principle anywhere in the image)")


class SessionFileError(ValueError):
    """A session file cannot be used: unreadable, corrupt, or made with another model."""


@dataclass
class OpResult:
    image: np.ndarray            # uint8 HxWx3, the new current image
    metrics: dict                # {'lr_psnr': float, and 'psnr','ssim' when HR ground truth is given}
    changed: str                 # human-readable what changed
    seconds: float
    extra: dict                  # op-specific
    warnings: list[str]          # non-finite guard actions etc.; [] normally
    notes: list[str] = field(default_factory=list)   # how the op behaved with this model (information)


@dataclass
class GalleryItem:
    seed: int
    temperature: float
    image: np.ndarray
    latents: Latents
    lr_psnr: float
    raw: np.ndarray | None = field(default=None, repr=False)   # float32 HxWx3 decode (unprojected)


@dataclass
class _State:
    """Everything an undo step restores (arrays are never modified in place)."""

    lr: np.ndarray
    hr: np.ndarray | None
    cond: object
    bicubic: np.ndarray
    latents: Latents | None
    raw: np.ndarray | None
    current: np.ndarray | None
    gallery: list
    label: str = ""


def _check_image(img, what: str) -> np.ndarray:
    """uint8 HxWx3 (HxW grey and HxWx4 RGBA are converted); ValueError otherwise."""
    if img is None:
        raise ValueError(f"{what}: no image given")
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ValueError(f"{what} must be a uint8 image (got dtype {a.dtype})")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"{what} must be an HxWx3 RGB image (got shape {a.shape})")
    if a.shape[2] == 4:
        a = a[..., :3]
    if min(a.shape[:2]) < 1:
        raise ValueError(f"{what} is empty (shape {a.shape})")
    return np.ascontiguousarray(a)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _hwc(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) float tensor -> float32 HxWx3 numpy."""
    return np.ascontiguousarray(t.detach().float().cpu().permute(1, 2, 0).numpy())


def _cap(v: float) -> float:
    return float(min(v, PSNR_CAP))


def _box_mean(t: torch.Tensor, k: int = 7) -> torch.Tensor:
    """k x k box mean of (..., H, W), 'valid' positions only, via cumulative sums."""
    c = torch.nn.functional.pad(t.cumsum(-2), (0, 0, 1, 0))
    t = c[..., k:, :] - c[..., :-k, :]
    c = torch.nn.functional.pad(t.cumsum(-1), (1, 0))
    return (c[..., k:] - c[..., :-k]) / (k * k)


def ssim_map(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """The SSIM map of :func:`flow.metrics.ssim` (skimage defaults for uint8 RGB: 7x7
    uniform window, sample covariance, data range 255) at its 'valid' positions,
    (3, H-6, W-6) float64 -- exactly the part skimage averages -- computed with
    cumulative-sum box filters."""
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).double()
    y = torch.from_numpy(np.ascontiguousarray(b)).permute(2, 0, 1).double()
    ux, uy, uxx, uyy, uxy = _box_mean(torch.stack([x, y, x * x, y * y, x * y]))
    cn = 49.0 / 48.0
    vx, vy, vxy = cn * (uxx - ux * ux), cn * (uyy - uy * uy), cn * (uxy - ux * uy)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def fast_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`flow.metrics.ssim` via :func:`ssim_map` (same value to ~1e-12, faster)."""
    if min(a.shape[:2]) < 7:
        return float(ssim(a, b))
    return float(ssim_map(a, b).mean())


def fast_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`flow.metrics.psnr` of two uint8 images with exact integer arithmetic."""
    d = a.astype(np.int32) - b.astype(np.int32)
    d = d.ravel()
    sse = int(np.dot(d.astype(np.int64), d.astype(np.int64)))
    if sse == 0:
        return float("inf")
    return float(10.0 * math.log10(255.0 ** 2 * d.size / sse))


def _img_digest(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()[:12]


def _nbytes(obj) -> int:
    if obj is None:
        return 0
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, Latents):
        return sum(t.numel() * t.element_size() for t in obj.levels)
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if hasattr(obj, "nbytes") and callable(obj.nbytes):
        return obj.nbytes()
    return 0


class EditSession:
    """Interactive latent editing of one LR image (see the module docstring)."""

    def __init__(self, model, lr: np.ndarray, hr: np.ndarray | None = None, history: int = 20,
                 max_history_bytes: int = 512 * 2**20):
        self.model = model.eval()
        self.scale = int(model.scale)
        lr = _check_image(lr, "the LR image")
        if min(lr.shape[:2]) < MIN_LR_SIDE:
            raise ValueError(f"the LR image is {lr.shape[1]}x{lr.shape[0]}: at least "
                             f"{MIN_LR_SIDE}x{MIN_LR_SIDE} pixels are needed")
        if hr is not None:
            hr = _check_image(hr, "the HR ground truth")
            if hr.shape[:2] != (lr.shape[0] * self.scale, lr.shape[1] * self.scale):
                raise ValueError(f"the HR ground truth is {hr.shape[1]}x{hr.shape[0]}, expected "
                                 f"{lr.shape[1] * self.scale}x{lr.shape[0] * self.scale} (LR x{self.scale})")
        if int(history) < 0 or int(max_history_bytes) < 0:
            raise ValueError("history and max_history_bytes must be >= 0")
        self.history = int(history)
        self.max_history_bytes = int(max_history_bytes)
        #: strength of the exact LR projection applied to every result (0 = off)
        self.lr_projection = 0.0
        #: HR pixels decoded around the changed latents' footprints (see flow.editing)
        self.splice_margin = E.DEFAULT_MARGIN
        self.identity = getattr(model, "identity", None) or model_identity(model)
        self.device = model.device
        self.dtype = next(model.parameters()).dtype
        self.hr = hr
        self.latents: Latents | None = None
        self._raw: np.ndarray | None = None
        self.current: np.ndarray | None = None
        self.gallery: list[GalleryItem] = []
        self.log: list[dict] = []
        self._undo: list[_State] = []
        self._redo: list[_State] = []
        self._ssim_cache = None
        self._set_lr(lr)

    @classmethod
    def from_hr(cls, model, hr: np.ndarray, **kw) -> "EditSession":
        """Session on the MATLAB-bicubic downscale of an HR photo (cropped to a
        multiple of the scale), which is kept as ground truth."""
        hr = _check_image(hr, "the HR photo")
        s = int(model.scale)
        H, W = hr.shape[0] // s * s, hr.shape[1] // s * s
        if min(H, W) < MIN_LR_SIDE * s:
            raise ValueError(f"the HR photo is {hr.shape[1]}x{hr.shape[0]}: at least "
                             f"{MIN_LR_SIDE * s}x{MIN_LR_SIDE * s} pixels are needed for {s}x")
        hr = np.ascontiguousarray(hr[:H, :W])
        return cls(model, make_lr(hr, s), hr=hr, **kw)

    # ------------------------------------------------------------------ state
    def _set_lr(self, lr: np.ndarray, cond=None):
        self.lr = lr
        if cond is None:
            with torch.no_grad():
                lr_t = to_tensor(lr)[None].to(self.device, self.dtype)
                cond = self.model.encode_condition(lr_t, cache=True)
        self.cond = cond
        self.bicubic = imresize(lr, float(self.scale))
        self._fallback_cache = None

    @property
    def hr_size(self) -> tuple[int, int]:
        return self.lr.shape[0] * self.scale, self.lr.shape[1] * self.scale

    @property
    def padded_size(self) -> tuple[int, int]:
        ph, pw = self.cond.pad
        H, W = self.hr_size
        return H + ph * self.scale, W + pw * self.scale

    def _fallback(self) -> torch.Tensor:
        """Bicubic upscaling of the LR, (1, 3, Hp, Wp) float, edge-padded."""
        if self._fallback_cache is None:
            H, W = self.hr_size
            Hp, Wp = self.padded_size
            b = np.pad(self.bicubic, ((0, Hp - H), (0, Wp - W), (0, 0)), mode="edge")
            self._fallback_cache = to_tensor(b)[None].to(self.device, self.dtype)
        return self._fallback_cache

    def _snapshot(self, label="") -> _State:
        return _State(self.lr, self.hr, self.cond, self.bicubic, self.latents, self._raw, self.current,
                      list(self.gallery), label)

    def _restore_state(self, st: _State):
        if st.cond is not self.cond:
            self._set_lr(st.lr, st.cond)
        self.hr = st.hr
        self.latents, self._raw, self.current = st.latents, st.raw, st.current
        self.gallery = list(st.gallery)

    def history_bytes(self) -> int:
        """Memory held by the undo/redo stacks (shared arrays counted once; the live
        state not counted)."""
        live = {id(o) for o in (self.lr, self.hr, self.cond, self.bicubic, self.latents, self._raw,
                                self.current)}
        live |= {id(g) for g in self.gallery}
        seen, total = set(live), 0

        def add(o):
            nonlocal total
            if o is not None and id(o) not in seen:
                seen.add(id(o))
                total += _nbytes(o)

        for st in self._undo + self._redo:
            for o in (st.lr, st.hr, st.cond, st.bicubic, st.latents, st.raw, st.current):
                add(o)
            for g in st.gallery:
                if id(g) not in seen:
                    seen.add(id(g))
                    total += g.image.nbytes + _nbytes(g.latents) + _nbytes(g.raw)
        return total

    def _trim(self):
        while self._undo and (len(self._undo) > self.history or self.history_bytes() > self.max_history_bytes):
            self._undo.pop(0)
        while self._redo and self.history_bytes() > self.max_history_bytes:
            self._redo.pop(0)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    # ---------------------------------------------------------------- helpers
    def _require_current(self):
        if self.latents is None or self.current is None:
            raise ValueError("No current image yet: generate a super-resolution first.")

    def _mask(self, mask, what="mask") -> np.ndarray:
        if mask is None:
            raise ValueError(f"the {what} is missing")
        m = np.asarray(mask)
        H, W = self.hr_size
        if m.ndim == 3 and m.shape[2] in (1, 3, 4):
            m = m[..., -1] if m.shape[2] == 4 else m.max(axis=2)
        if m.ndim != 2 or m.shape != (H, W):
            raise ValueError(f"the {what} must be a {W}x{H} (HR-size) array, got shape {m.shape}")
        m = m.astype(bool) if m.dtype != bool else m
        if not m.any():
            raise ValueError(f"the {what} is empty: paint over the region first")
        return m

    def _metrics(self, img: np.ndarray, raw_img: np.ndarray | None = None, box=None, prev=None) -> dict:
        m = {"lr_psnr": _cap(lr_psnr(img, self.lr, self.scale))}
        if raw_img is not None:
            m["lr_psnr_raw"] = _cap(lr_psnr(raw_img, self.lr, self.scale))
        if self.hr is not None and self.hr.shape == img.shape:
            m["psnr"] = _cap(fast_psnr(img, self.hr))
            m["ssim"] = self._ssim(img, box, prev)
        return m

    def _ssim(self, img: np.ndarray, box, prev) -> float:
        """SSIM vs HR; when ``img`` differs from ``prev`` only inside ``box`` and the
        SSIM map of ``prev`` is cached, only the affected part of the map is redone."""
        H, W = img.shape[:2]
        if min(H, W) < 7:
            return float(ssim(img, self.hr))
        c = self._ssim_cache
        if box is not None and c is not None and prev is not None and c[0] is prev and c[1] is self.hr:
            y0, y1, x0, x1 = box
            smap = c[2]
            if y1 > y0 and x1 > x0:
                ry0, ry1 = max(0, y0 - 6), min(H - 6, y1)        # map rows whose 7x7 window sees the box
                rx0, rx1 = max(0, x0 - 6), min(W - 6, x1)
                smap = smap.clone()
                smap[:, ry0:ry1, rx0:rx1] = ssim_map(img[ry0:ry1 + 6, rx0:rx1 + 6], self.hr[ry0:ry1 + 6, rx0:rx1 + 6])
        else:
            smap = ssim_map(img, self.hr)
        self._ssim_cache = (img, self.hr, smap)
        return float(smap.mean())

    def _show(self, raw: np.ndarray) -> np.ndarray:
        """The displayed uint8 image of a raw float decode (with the LR projection)."""
        if self.lr_projection:
            lr_f = self.lr.astype(np.float64) / 255.0
            raw = E.project_lr(raw.astype(np.float64), lr_f, self.scale, float(self.lr_projection))
        return _to_uint8(raw)

    def _decode_full(self, lat: Latents):
        """Full decode (with the guard): (list of float32 HxWx3, latents, warnings)."""
        H, W = self.hr_size
        Hp, Wp = self.padded_size
        fb = self._fallback()[..., :H, :W]

        def dec(z):
            return self.model.decode(self.cond, z)

        x, lat, warns = E.guard_decode(dec, lat, (0, H, 0, W), fallback=fb)
        return [_hwc(x[i]) for i in range(x.shape[0])], lat, warns

    def _decode_edit(self, lat: Latents, masks):
        """Decode latents that differ from ``self.latents`` only inside ``masks``:
        a window around them, spliced into the current raw image (or a full decode
        when the window is most of the image).  Returns (raw, latents, warnings, how,
        box): ``box`` bounds the pixels that may have changed (None: anywhere)."""
        bbox = E.masks_bbox(masks, lat.strides)
        if bbox is None:
            return self._raw, lat, [], "nothing", (0, 0, 0, 0)
        if not E.supports_region(self.model):
            imgs, lat, warns = self._decode_full(lat)
            return imgs[0], lat, warns, "full decode: no local decode for this model", None
        Hp, Wp = self.padded_size
        H, W = self.hr_size
        margin = int(self.splice_margin)
        for attempt in range(3):
            win, splice = E.edit_boxes(bbox, (Hp, Wp), self.model.total_stride, margin)
            area = (win[1] - win[0]) * (win[3] - win[2])
            if self._raw is None or area >= FULL_DECODE_FRACTION * Hp * Wp:
                imgs, lat, warns = self._decode_full(lat)
                return imgs[0], lat, warns, "full decode", None
            y0, y1, x0, x1 = win
            fb = self._fallback()[..., y0:y1, x0:x1]

            def dec(z):
                return E.decode_window(self.model, self.cond, z, win)

            x, lat, warns = E.guard_decode(dec, lat, win, fallback=fb)
            xw = _hwc(x[0])
            # Seam check: just outside the splice box the window decode must agree with
            # the current image (else the edit reaches further than the margin, or the
            # window border error does): widen the margin and decode again.
            if self._seam_error(xw, win, splice, max(2, margin // 8)) <= SEAM_TOLERANCE or attempt == 2:
                break
            margin *= 2
        sy0, sy1, sx0, sx1 = splice
        sy1, sx1 = min(sy1, H), min(sx1, W)
        raw = self._raw.copy()
        if sy1 > sy0 and sx1 > sx0:
            raw[sy0:sy1, sx0:sx1] = xw[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0]
        how = f"decoded a {y1 - y0}x{x1 - x0} window"
        if margin != self.splice_margin:
            how += f", margin widened to {margin} px"
        return raw, lat, warns, how, (sy0, max(sy0, sy1), sx0, max(sx0, sx1))

    def _seam_error(self, xw: np.ndarray, win, splice, band: int) -> float:
        """Max |window decode - current raw| over the ``band`` pixels just outside the
        splice box (inside the window and the unpadded image)."""
        H, W = self.hr_size
        y0, y1, x0, x1 = win
        sy0, sy1, sx0, sx1 = splice
        by0, by1 = max(y0, sy0 - band), min(y1, sy1 + band, H)
        bx0, bx1 = max(x0, sx0 - band), min(x1, sx1 + band, W)
        if by1 <= by0 or bx1 <= bx0:
            return 0.0
        d = np.abs(xw[by0 - y0:by1 - y0, bx0 - x0:bx1 - x0] - self._raw[by0:by1, bx0:bx1]).max(axis=2)
        inner = np.zeros(d.shape, bool)
        iy0, iy1 = max(sy0, by0) - by0, min(sy1, by1) - by0
        ix0, ix1 = max(sx0, bx0) - bx0, min(sx1, bx1) - bx0
        inner[iy0:iy1, ix0:ix1] = True
        ring = d[~inner]
        return float(ring.max()) if ring.size else 0.0

    def _edit_notes(self) -> list[str]:
        """Notes for a region edit: how it behaves with this model (HCFlow: globally)."""
        return [] if E.supports_region(self.model) else [GLOBAL_EDIT_NOTE]

    def _commit(self, op: str, params: dict, changed: str, t0: float, *, latents, raw, extra=None,
                warnings=None, gallery=None, lr_change=None, box=None, notes=None) -> OpResult:
        """Push the old state, install the new one, log, and build the OpResult.
        ``box``: the new image differs from the current one only inside it (lets the
        metrics update incrementally); None: anywhere."""
        prev = self.current
        if self.current is not None:
            self._undo.append(self._snapshot(op))
            self._redo.clear()
        if lr_change is not None:
            lr, hr, cond = lr_change
            self._set_lr(lr, cond)
            self.hr = hr
        if gallery is not None:
            self.gallery = gallery
        self.latents, self._raw = latents, raw
        self.current = self._show(raw)
        self._trim()
        if self.lr_projection or lr_change is not None:
            box = None                                  # the projection changes every pixel
        metrics = self._metrics(self.current, _to_uint8(raw) if self.lr_projection else None, box, prev)
        seconds = time.perf_counter() - t0
        warnings, notes = list(warnings or []), list(notes or [])
        entry = {"op": op, "params": params, "changed": changed, "seconds": round(seconds, 4),
                 "warnings": warnings, "lr_psnr": metrics["lr_psnr"]}
        if notes:
            entry["notes"] = notes
        self.log.append(entry)
        return OpResult(self.current, metrics, changed, seconds, extra or {}, warnings, notes)

    # ------------------------------------------------------------- operations
    @torch.no_grad()
    def generate(self, temperature=0.8, seed=0, n=4) -> OpResult:
        """A gallery of ``n`` samples (seeds seed..seed+n-1); current = sample 0."""
        t0 = time.perf_counter()
        tau, seed = E._check_tau(temperature), E._check_seed(seed)
        n = int(n)
        if n < 1 or n > 64:
            raise ValueError(f"number of samples must be 1..64, got {n}")
        items, warns = [], []
        for k in range(n):
            lat = self.model.draw_latents(self.cond, tau, seed + k, 1)
            imgs, lat, w = self._decode_full(lat)
            warns += [f"sample {k} (seed {seed + k}): {m}" for m in w]
            img = self._show(imgs[0])
            items.append(GalleryItem(seed + k, tau, img, lat, _cap(lr_psnr(img, self.lr, self.scale)), imgs[0]))
        res = self._commit("generate", {"temperature": tau, "seed": seed, "n": n},
                           f"sampled {n} image(s) at temperature {tau:g} (seeds {seed}..{seed + n - 1})",
                           t0, latents=items[0].latents, raw=items[0].raw, gallery=items, warnings=warns)
        res.extra["gallery"] = list(items)
        return res

    def _gallery_index(self, index) -> int:
        if not self.gallery:
            raise ValueError("The gallery is empty: generate samples first.")
        try:
            i = int(index)
        except (TypeError, ValueError):
            raise ValueError(f"sample index must be an integer, got {index!r}") from None
        if not 0 <= i < len(self.gallery):
            raise ValueError(f"sample index {i} is out of range (the gallery has {len(self.gallery)} "
                             f"sample(s): 0..{len(self.gallery) - 1})")
        return i

    @torch.no_grad()
    def pick(self, index: int) -> OpResult:
        """Make gallery item ``index`` the current image."""
        t0 = time.perf_counter()
        i = self._gallery_index(index)
        g = self.gallery[i]
        raw = g.raw if g.raw is not None else g.image.astype(np.float32) / 255.0
        return self._commit("pick", {"index": i, "seed": g.seed, "temperature": g.temperature},
                            f"picked sample {i} (seed {g.seed}, temperature {g.temperature:g})", t0,
                            latents=g.latents, raw=raw)

    @torch.no_grad()
    def resample_region(self, mask: np.ndarray, temperature=0.8, seed=0, dilation=1) -> OpResult:
        """Fresh N(0, tau^2) latents where their footprints touch ``mask`` (dilated)."""
        t0 = time.perf_counter()
        self._require_current()
        m = self._mask(mask)
        tau, seed, d = E._check_tau(temperature), E._check_seed(seed), self._dilation(dilation)
        masks = E.level_masks(m, self.latents, dilation=d)
        lat = E.resample_region(self.latents, masks, tau, seed)
        raw, lat, warns, how, box = self._decode_edit(lat, masks)
        n, k = E.count_masked(masks)
        return self._commit("resample_region", {"temperature": tau, "seed": seed, "dilation": d,
                                                "mask_pixels": int(m.sum()), "mask_sha1": _img_digest(m)},
                            f"resampled {n} latents in {k} levels at temperature {tau:g} ({how})", t0,
                            latents=lat, raw=raw, warnings=warns, box=box, notes=self._edit_notes())

    @staticmethod
    def _dilation(d) -> int:
        try:
            d = int(d)
        except (TypeError, ValueError):
            raise ValueError(f"dilation must be an integer, got {d!r}") from None
        if d < 0 or d > 64:
            raise ValueError(f"dilation must be 0..64 latent positions, got {d}")
        return d

    @torch.no_grad()
    def take_region_from(self, index: int, mask: np.ndarray, dilation=1) -> OpResult:
        """Copy gallery item ``index``'s latents inside ``mask`` (dilated)."""
        t0 = time.perf_counter()
        self._require_current()
        i = self._gallery_index(index)
        m = self._mask(mask)
        d = self._dilation(dilation)
        g = self.gallery[i]
        if any(a.shape != b.shape for a, b in zip(g.latents.levels, self.latents.levels)):
            raise ValueError("that sample belongs to a different image")
        masks = E.level_masks(m, self.latents, dilation=d)
        lat = E.take_region(self.latents, g.latents, masks)
        raw, lat, warns, how, box = self._decode_edit(lat, masks)
        n, k = E.count_masked(masks)
        return self._commit("take_region_from", {"index": i, "seed": g.seed, "dilation": d,
                                                 "mask_pixels": int(m.sum()), "mask_sha1": _img_digest(m)},
                            f"took {n} latents in {k} levels from sample {i} ({how})", t0,
                            latents=lat, raw=raw, warnings=warns, box=box, notes=self._edit_notes())

    @torch.no_grad()
    def normalize(self, mode='local', temperature=0.8, seed=0, mask=None) -> OpResult:
        """Latent normalization (eqs. 6-7): 'global' | 'local' | 'spatial', optionally
        only inside a mask."""
        t0 = time.perf_counter()
        self._require_current()
        if mode not in E.MODES:
            raise ValueError(f"normalization mode must be one of {', '.join(E.MODES)}, got {mode!r}")
        tau, seed = E._check_tau(temperature), E._check_seed(seed)
        masks = None
        params = {"mode": mode, "temperature": tau, "seed": seed}
        if mask is not None:
            m = self._mask(mask)
            masks = E.level_masks(m, self.latents, dilation=0)
            params.update(mask_pixels=int(m.sum()), mask_sha1=_img_digest(m))
        lat, info = E.normalize(self.latents, mode, tau, seed, masks, return_info=True)
        if masks is None:
            imgs, lat, warns = self._decode_full(lat)
            raw, how, box = imgs[0], "full decode", None
        else:
            raw, lat, warns, how, box = self._decode_edit(lat, masks)
        changed = (f"{mode} normalization of {info.collections} latent collection(s) to temperature {tau:g}"
                   + (" inside the mask" if masks is not None else "") + f" ({how})")
        if info.notes:
            changed += "; " + "; ".join(info.notes)
        return self._commit("normalize", params, changed, t0, latents=lat, raw=raw, warnings=warns, box=box,
                            notes=self._edit_notes() if masks is not None else None,
                            extra={"collections": info.collections, "skipped": info.skipped,
                                   "degenerate": info.degenerate})

    @torch.no_grad()
    def transfer(self, source: np.ndarray, src_box, dst_yx, dst_hw, mode='local', temperature=0.8,
                 seed=0, dilation=1) -> OpResult:
        """Paste ``source[y0:y1, x0:x1]`` (resized to ``dst_hw``) at ``dst_yx`` into the
        current image and harmonize it: the latents touching the paste are encoded from
        the pasted image and normalized (``mode``), the rest are kept."""
        t0 = time.perf_counter()
        self._require_current()
        src = _check_image(source, "the source image")
        if mode not in E.MODES:
            raise ValueError(f"normalization mode must be one of {', '.join(E.MODES)}, got {mode!r}")
        tau, seed, d = E._check_tau(temperature), E._check_seed(seed), self._dilation(dilation)
        if not (hasattr(src_box, "__len__") and len(src_box) == 4):
            raise ValueError("the source box must be (y0, x0, y1, x1)")
        if not (hasattr(dst_yx, "__len__") and len(dst_yx) == 2 and hasattr(dst_hw, "__len__") and len(dst_hw) == 2):
            raise ValueError("the destination must be given as (y, x) and (height, width)")
        pasted, m = E.paste(self.current, src, src_box, dst_yx, dst_hw)
        pasted_t = to_tensor(pasted)[None].to(self.device, self.dtype)
        lat, masks = E.content_transfer(self.model, self.cond, self.latents, pasted_t, m, mode, tau, seed, d,
                                        self.splice_margin)
        raw, lat, warns, how, box = self._decode_edit(lat, masks)
        raw_psnr = _cap(lr_psnr(pasted, self.lr, self.scale))
        n, k = E.count_masked(masks)
        res = self._commit(
            "transfer", {"src_box": [int(v) for v in src_box], "dst_yx": [int(v) for v in dst_yx],
                         "dst_hw": [int(v) for v in dst_hw], "mode": mode, "temperature": tau, "seed": seed,
                         "dilation": d, "source_shape": list(src.shape), "source_sha1": _img_digest(src)},
            f"pasted a {int(dst_hw[0])}x{int(dst_hw[1])} region and harmonized {n} latents in {k} levels "
            f"({mode} normalization, {how})", t0, latents=lat, raw=raw, warnings=warns, box=box,
            notes=self._edit_notes())
        res.extra.update(raw=pasted, raw_lr_psnr=raw_psnr, harmonized_lr_psnr=res.metrics["lr_psnr"])
        return res

    @torch.no_grad()
    def style_transfer(self, style: np.ndarray, mask: np.ndarray | None = None) -> OpResult:
        """LR-consistent style transfer: the style image (resized to cover the HR size
        and centre-cropped) is encoded with its own LR and decoded with this LR, over
        the whole image or only inside ``mask``."""
        t0 = time.perf_counter()
        st = _check_image(style, "the style image")
        H, W = self.hr_size
        style_hr = E.fit_image(st, H, W)
        params = {"style_shape": list(st.shape), "style_sha1": _img_digest(st)}
        masks = None
        if mask is not None:
            self._require_current()
            m = self._mask(mask)
            params.update(mask_pixels=int(m.sum()), mask_sha1=_img_digest(m))
        hr_t = to_tensor(style_hr)[None].to(self.device, self.dtype)
        lr_t = to_tensor(make_lr(style_hr, self.scale))[None].to(self.device, self.dtype)
        z = E.style_latents(self.model, hr_t, lr_t)
        if mask is not None:
            masks = E.level_masks(m, self.latents, dilation=0)
            lat = E.style_transfer(self.latents, z, masks)
            raw, lat, warns, how, box = self._decode_edit(lat, masks)
            n, k = E.count_masked(masks)
            changed = f"style latents in {n} positions of {k} levels ({how})"
        else:
            imgs, lat, warns = self._decode_full(z)
            raw, box = imgs[0], None
            changed = "style latents everywhere (full decode)"
        res = self._commit("style_transfer", params, changed, t0, latents=lat, raw=raw, warnings=warns, box=box,
                           notes=self._edit_notes() if mask is not None else None)
        res.extra["style_hr"] = style_hr
        return res

    @torch.no_grad()
    def restore(self, degraded: np.ndarray, temperature=0.8, seed=0) -> OpResult:
        """Restoration (§4.5) of a degraded HR photo: the session LR becomes its MATLAB
        downscale; its latents get spatial then local normalization.  The gallery is
        cleared (it belonged to the old LR); the HR ground truth is kept when it has
        the same size."""
        t0 = time.perf_counter()
        deg = _check_image(degraded, "the degraded photo")
        s = self.scale
        Hd, Wd = deg.shape[0] // s * s, deg.shape[1] // s * s
        if min(Hd, Wd) < MIN_LR_SIDE * s:
            raise ValueError(f"the degraded photo is {deg.shape[1]}x{deg.shape[0]}: at least "
                             f"{MIN_LR_SIDE * s}x{MIN_LR_SIDE * s} pixels are needed")
        deg = np.ascontiguousarray(deg[:Hd, :Wd])
        tau, seed = E._check_tau(temperature), E._check_seed(seed)
        new_lr = make_lr(deg, s)
        lr_t = to_tensor(new_lr)[None].to(self.device, self.dtype)
        cond = self.model.encode_condition(lr_t, cache=True)
        z, _ = self.model.encode(to_tensor(deg)[None].to(self.device, self.dtype), cond)
        z = E.restore_latents(z, tau, seed)
        hr = self.hr if self.hr is not None and self.hr.shape == deg.shape else None
        old = (self.lr, self.hr, self.cond)
        # decode in the new LR's context
        self._set_lr(new_lr, cond)
        try:
            imgs, z, warns = self._decode_full(z)
            sr_imgs, _, _ = self._decode_full(self.model.draw_latents(cond, tau, seed, 1))
        finally:
            self._set_lr(old[0], old[2])
        res = self._commit("restore", {"temperature": tau, "seed": seed, "input_shape": list(deg.shape),
                                       "input_sha1": _img_digest(deg)},
                           f"restored a {Wd}x{Hd} photo: new LR from it, spatial + local normalization "
                           f"of all latents to temperature {tau:g}", t0, latents=z, raw=imgs[0],
                           warnings=warns, gallery=[], lr_change=(new_lr, hr, cond))
        res.extra.update(input=deg, sr_from_lr=self._show(sr_imgs[0]))
        return res

    @torch.no_grad()
    def use_hr(self) -> OpResult:
        """Make the HR ground truth the current image (its latents = its encoding), e.g.
        as the target of a content transfer.  Needs a session with HR."""
        t0 = time.perf_counter()
        if self.hr is None:
            raise ValueError("This session has no HR ground truth.")
        z, _ = self.model.encode(to_tensor(self.hr)[None].to(self.device, self.dtype), self.cond)
        # HCFlow's encode also returns its continuous top level (z.top); the session decodes
        # every image from the LR instead, so its ground truth comes back only approximately
        notes = [] if z.top is None else [
            "HCFlow decodes the encoded ground truth from the LR (not from the photo's own coarse "
            "level), so the current image is close to the ground truth, not equal (see PSNR)"]
        imgs, z, warns = self._decode_full(z)
        return self._commit("use_hr", {}, "the HR ground truth is the current image (encoded)", t0,
                            latents=z, raw=imgs[0], warnings=warns, notes=notes)

    def uncertainty(self) -> np.ndarray:
        """float32 HxW: per-pixel std (0..255 scale) across the gallery images, averaged over RGB."""
        if not self.gallery:
            raise ValueError("The gallery is empty: generate samples first.")
        st = np.stack([g.image for g in self.gallery]).astype(np.float32)
        return st.std(axis=0).mean(axis=2).astype(np.float32)

    # -------------------------------------------------------------- undo/redo
    def _replay(self, label: str, t0: float) -> OpResult:
        metrics = self._metrics(self.current, _to_uint8(self._raw) if self.lr_projection else None)
        seconds = time.perf_counter() - t0
        self.log.append({"op": label, "params": {}, "changed": label, "seconds": round(seconds, 4),
                         "warnings": [], "lr_psnr": metrics["lr_psnr"]})
        return OpResult(self.current, metrics, label, seconds, {}, [])

    def undo(self) -> OpResult | None:
        if not self._undo:
            return None
        t0 = time.perf_counter()
        st = self._undo.pop()
        self._redo.append(self._snapshot(st.label))
        self._restore_state(st)
        return self._replay(f"undo {st.label}", t0)

    def redo(self) -> OpResult | None:
        if not self._redo:
            return None
        t0 = time.perf_counter()
        st = self._redo.pop()
        self._undo.append(self._snapshot(st.label))
        self._restore_state(st)
        return self._replay(f"redo {st.label}", t0)

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        """One safetensors file: LR, HR, latents, raw/current image, gallery and the
        edit log; metadata carries the model identity and a checksum."""
        from safetensors.torch import save_file

        t: dict[str, torch.Tensor] = {"lr": torch.from_numpy(self.lr.copy())}
        if self.hr is not None:
            t["hr"] = torch.from_numpy(self.hr.copy())
        if self.latents is not None:
            for i, z in enumerate(self.latents.levels):
                t[f"latents.{i}"] = z.detach().float().cpu().clone()
            t["raw"] = torch.from_numpy(self._raw.astype(np.float32))
            t["current"] = torch.from_numpy(self.current.copy())
        gal = []
        for k, g in enumerate(self.gallery):
            t[f"gallery.{k}.image"] = torch.from_numpy(g.image.copy())
            if g.raw is not None:
                t[f"gallery.{k}.raw"] = torch.from_numpy(g.raw.astype(np.float32))
            for i, z in enumerate(g.latents.levels):
                t[f"gallery.{k}.latents.{i}"] = z.detach().float().cpu().clone()
            gal.append({"seed": int(g.seed), "temperature": float(g.temperature), "lr_psnr": g.lr_psnr})
        meta = {
            "format": SESSION_FORMAT,
            "model_identity": self.identity,
            "model_name": self.model.cfg.name,
            "scale": str(self.scale),
            "strides": json.dumps(list(self.model.latent_strides)),
            "gallery": json.dumps(gal),
            "log": json.dumps(self.log, default=str),
            "lr_projection": repr(float(self.lr_projection)),
            "splice_margin": str(int(self.splice_margin)),
            "n_levels": str(len(self.latents.levels)) if self.latents is not None else "0",
        }
        meta["checksum"] = _checksum(t, meta)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file(t, str(tmp), metadata=meta)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path, model) -> "EditSession":
        """Open a session file with ``model`` (the one it was saved with).  The current
        image, latents, gallery and log come back bit for bit; undo history does not.
        Raises :class:`SessionFileError` for unreadable/corrupt files or another model."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise SessionFileError(f"session file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                t = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # noqa: BLE001 - any parse failure is a corrupt file
            raise SessionFileError(f"{path.name} is not a readable session file (truncated or corrupt?): "
                                   f"{str(e).splitlines()[0][:160] if str(e) else type(e).__name__}") from None
        if meta.get("format") != SESSION_FORMAT:
            raise SessionFileError(f"{path.name} is not an SRFlow Studio session file "
                                   f"(format {meta.get('format')!r}, expected {SESSION_FORMAT!r})")
        if meta.get("checksum") != _checksum(t, {k: v for k, v in meta.items() if k != "checksum"}):
            raise SessionFileError(f"{path.name} is corrupt (checksum mismatch)")
        ident = getattr(model, "identity", None) or model_identity(model)
        if meta.get("model_identity") != ident:
            raise SessionFileError(
                f"{path.name} was saved with another model ({meta.get('model_name', '?')}, identity "
                f"{meta.get('model_identity')}); the loaded model is {model.cfg.name} (identity {ident}). "
                f"Load it with the model it was made with.")
        try:
            def img(k):
                return np.ascontiguousarray(t[k].numpy()) if k in t else None

            s = cls(model, img("lr"), hr=img("hr"))
            s.lr_projection = float(meta.get("lr_projection", "0.0"))
            s.splice_margin = int(meta.get("splice_margin", str(E.DEFAULT_MARGIN)))
            n_lv = int(meta.get("n_levels", "0"))
            shapes = model.latent_shapes(*s.padded_size)

            def lat_of(prefix):
                lv = [t[f"{prefix}{i}"] for i in range(len(shapes))]
                for z, shp in zip(lv, shapes):
                    if tuple(z.shape[1:]) != tuple(shp) or z.shape[0] != 1:
                        raise SessionFileError(f"{path.name}: latents of shape {tuple(z.shape)} do not fit "
                                               f"this image (expected (1,)+{tuple(shp)})")
                return Latents([z.to(s.device, s.dtype) for z in lv], model.latent_strides, s.hr_size)

            if n_lv:
                s.latents = lat_of("latents.")
                s._raw = img("raw")
                s.current = img("current")
            for k, g in enumerate(json.loads(meta.get("gallery", "[]"))):
                s.gallery.append(GalleryItem(int(g["seed"]), float(g["temperature"]), img(f"gallery.{k}.image"),
                                             lat_of(f"gallery.{k}.latents."), g["lr_psnr"],
                                             img(f"gallery.{k}.raw")))
            s.log = json.loads(meta.get("log", "[]"))
        except SessionFileError:
            raise
        except (KeyError, ValueError, TypeError) as e:
            raise SessionFileError(f"{path.name} is incomplete or inconsistent: {e}") from None
        return s


def _checksum(tensors: dict, meta: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        v = tensors[k].contiguous()
        h.update(k.encode())
        h.update(str(v.dtype).encode() + str(tuple(v.shape)).encode())
        h.update(v.numpy().tobytes())
    for k in sorted(meta):
        h.update(k.encode() + b"=" + str(meta[k]).encode())
    return h.hexdigest()
