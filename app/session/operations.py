"""The editing session: one LR image, its encoder condition, a gallery of samples, the
current latents/image, and the operations on them (generate, pick, brush resample, take
region, normalization, paste + harmonize, style transfer, restoration, ground truth as
target), with undo/redo (:mod:`app.session.history`) and session files
(:mod:`app.session.files`).

No Gradio here; the UI (:mod:`app.ui`) wraps :class:`EditSession`.  Images crossing
this API are uint8 HxWx3 numpy arrays; bad arguments raise ``ValueError`` with a
message meant for the user; limits come from :mod:`app.limits`.

How an edit is computed (:mod:`flow.editing`, with any :class:`flow.models.protocol.FlowModel`):

* the encoder runs **once** per LR image (``encode_condition`` with the per-layer
  caches); every sample and edit reuses it;
* an operation changes latents with a :mod:`flow.editing` function, and the session's
  :class:`flow.editing.Renderer` decodes them: an edit that changes latents only near a
  mask decodes just a window around them and splices its centre into the current image
  (models with a local region decode), anything else the whole image;
* models without a local region decode (``model.supports_region`` False: HCFlow, whose
  coarse latents change the whole image) decode the whole image for every edit; results
  then say so in ``OpResult.notes`` (see :func:`global_edit_note`);
* the raw decoded image (float) is kept; the shown image is
  ``uint8(clip(P(raw)))`` where ``P`` is the optional exact LR projection with
  strength ``lr_projection`` (0 = off, the default);
* every decode goes through the non-finite guard (:func:`flow.editing.guard_decode`);
  what it did is reported in ``OpResult.warnings``.

Temperature is a standard-deviation multiplier (latents ~ N(0, tau^2)).
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch

from flow import editing as E
from flow.models.checkpoint import model_identity
from flow.models.protocol import Latents
from flow.models.registry import family
from flow.ops.images import to_tensor, to_uint8
from flow.ops.imresize import imresize, make_lr
from flow.ops.metrics import lr_psnr

from app import limits
from app.images import check_image

from .files import load_session, save_session
from .history import GalleryItem, History, Snapshot
from .metrics import ImageMetrics, cap


def global_edit_note(label: str) -> str:
    """Told with every region edit of a model without a local decode (``label``: its family)."""
    return (f"this model ({label}) has no local decode: a region edit re-decodes the whole image; only "
            "its finest latent level acts locally, the coarser latents under the mask also change "
            "pixels around it (in principle anywhere in the image)")


#: :func:`global_edit_note` of HCFlow models
GLOBAL_EDIT_NOTE = global_edit_note("HCFlow")


@dataclass
class OpResult:
    image: np.ndarray            # uint8 HxWx3, the new current image
    metrics: dict                # {'lr_psnr': float, and 'psnr','ssim' when HR ground truth is given}
    changed: str                 # human-readable what changed
    seconds: float
    extra: dict                  # op-specific
    warnings: list[str]          # non-finite guard actions etc.; [] normally
    notes: list[str] = field(default_factory=list)   # how the op behaved with this model (information)


def _img_digest(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()[:12]


def check_temperature(temperature) -> float:
    """A temperature within 0..:data:`app.limits.MAX_TEMPERATURE`."""
    t = E.check_temperature(temperature)
    if t > limits.MAX_TEMPERATURE:
        raise ValueError(f"temperature must be at most {limits.MAX_TEMPERATURE:g}, got {temperature!r}")
    return t


def check_seed(seed) -> int:
    """A seed within 0..:data:`app.limits.MAX_SEED`."""
    s = E.check_seed(seed)
    if s > limits.MAX_SEED:
        raise ValueError(f"seed must be at most {limits.MAX_SEED}, got {seed!r}")
    return s


def check_dilation(d) -> int:
    """A mask dilation within 0..:data:`app.limits.MAX_DILATION` latent positions."""
    try:
        d = int(d)
    except (TypeError, ValueError):
        raise ValueError(f"dilation must be an integer, got {d!r}") from None
    if d < 0 or d > limits.MAX_DILATION:
        raise ValueError(f"dilation must be 0..{limits.MAX_DILATION} latent positions, got {d}")
    return d


def check_mode(mode) -> str:
    if mode not in E.MODES:
        raise ValueError(f"normalization mode must be one of {', '.join(E.MODES)}, got {mode!r}")
    return mode


class EditSession:
    """Interactive latent editing of one LR image (see the module docstring)."""

    def __init__(self, model, lr: np.ndarray, hr: np.ndarray | None = None, history: int = limits.HISTORY_STEPS,
                 max_history_bytes: int = limits.HISTORY_MB * 2**20, max_lr_side: int | None = None,
                 max_action_mb: float = limits.MAX_ACTION_MB):
        self.model = model.eval()
        self.scale = int(model.scale)
        #: hosting limits (see :mod:`app.limits`): the LR's longest side (None: none) and the
        #: memory estimate of one action, both checked before the work starts
        self.max_lr_side = None if max_lr_side is None else int(max_lr_side)
        self.max_action_mb = float(max_action_mb)
        lr = check_image(lr, "the LR image")
        if min(lr.shape[:2]) < limits.MIN_LR_SIDE:
            raise ValueError(f"the LR image is {lr.shape[1]}x{lr.shape[0]}: at least "
                             f"{limits.MIN_LR_SIDE}x{limits.MIN_LR_SIDE} pixels are needed")
        limits.check_lr_side("the image", *lr.shape[:2], self.max_lr_side)
        self._check_memory("loading the image", lr.shape[0] * self.scale, lr.shape[1] * self.scale)
        if hr is not None:
            hr = check_image(hr, "the HR ground truth")
            if hr.shape[:2] != (lr.shape[0] * self.scale, lr.shape[1] * self.scale):
                raise ValueError(f"the HR ground truth is {hr.shape[1]}x{hr.shape[0]}, expected "
                                 f"{lr.shape[1] * self.scale}x{lr.shape[0] * self.scale} (LR x{self.scale})")
        self.history = History(history, max_history_bytes)
        #: strength of the exact LR projection applied to every result (0 = off)
        self.lr_projection = 0.0
        #: HR pixels decoded around the changed latents' footprints (see flow.editing)
        self.splice_margin = E.DEFAULT_MARGIN
        self.identity = getattr(model, "identity", None) or model_identity(model)
        self.device = model.device
        self.dtype = model.dtype
        self.hr = hr
        self.latents: Latents | None = None
        self._raw: np.ndarray | None = None
        self.current: np.ndarray | None = None
        self.gallery: list[GalleryItem] = []
        self.log: list[dict] = []
        self._metrics = ImageMetrics()
        self._style_cache: OrderedDict = OrderedDict()
        self._set_lr(lr)

    @classmethod
    def from_hr(cls, model, hr: np.ndarray, **kw) -> "EditSession":
        """Session on the MATLAB-bicubic downscale of an HR photo (cropped to a
        multiple of the scale), which is kept as ground truth."""
        hr = check_image(hr, "the HR photo")
        s = int(model.scale)
        H, W = hr.shape[0] // s * s, hr.shape[1] // s * s
        if min(H, W) < limits.MIN_LR_SIDE * s:
            raise ValueError(f"the HR photo is {hr.shape[1]}x{hr.shape[0]}: at least "
                             f"{limits.MIN_LR_SIDE * s}x{limits.MIN_LR_SIDE * s} pixels are needed for {s}x")
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
        self.renderer = E.Renderer(self.model, cond, self.bicubic)

    @property
    def hr_size(self) -> tuple[int, int]:
        return self.lr.shape[0] * self.scale, self.lr.shape[1] * self.scale

    @property
    def padded_size(self) -> tuple[int, int]:
        return self.cond.padded_hr_size

    def _snapshot(self, label="") -> Snapshot:
        return Snapshot(self.lr, self.hr, self.cond, self.bicubic, self.latents, self._raw, self.current,
                        list(self.gallery), label)

    def _restore_state(self, st: Snapshot):
        if st.cond is not self.cond:
            self._set_lr(st.lr, st.cond)
        self.hr = st.hr
        self.latents, self._raw, self.current = st.latents, st.raw, st.current
        self.gallery = list(st.gallery)

    def history_bytes(self) -> int:
        """Memory held by the undo/redo stacks (shared arrays counted once; the live
        state not counted)."""
        return self.history.nbytes(self._snapshot())

    @property
    def can_undo(self) -> bool:
        return bool(self.history.undo_stack)

    @property
    def can_redo(self) -> bool:
        return bool(self.history.redo_stack)

    # ---------------------------------------------------------------- helpers
    def _check_memory(self, what: str, hr_h: int | None = None, hr_w: int | None = None, kept: int = 1):
        """Refuse (``ValueError``) an action whose memory estimate exceeds ``max_action_mb``."""
        if hr_h is None:
            hr_h, hr_w = self.hr_size
        limits.check_action(what, hr_h, hr_w, kept, self.max_action_mb)

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

    def _measure(self, img: np.ndarray, raw_img: np.ndarray | None = None, box=None, prev=None) -> dict:
        return self._metrics(img, self.lr, self.scale, self.hr, raw_img, box, prev)

    def _show(self, raw: np.ndarray) -> np.ndarray:
        """The displayed uint8 image of a raw float decode (with the LR projection)."""
        if self.lr_projection:
            lr_f = self.lr.astype(np.float64) / 255.0
            raw = E.project_lr(raw.astype(np.float64), lr_f, self.scale, float(self.lr_projection))
        return to_uint8(raw)

    def _decode_edit(self, lat: Latents, masks) -> E.EditDecode:
        """Decode latents that differ from the current ones only inside ``masks``."""
        return self.renderer.edit(lat, masks, self._raw, self.splice_margin)

    def _edit_notes(self) -> list[str]:
        """Notes for a region edit: how it behaves with this model (no local decode: globally)."""
        return [] if self.model.supports_region else [global_edit_note(family(self.model.family).label)]

    def _commit(self, op: str, params: dict, changed: str, t0: float, *, latents, raw, extra=None,
                warnings=None, gallery=None, lr_change=None, box=None, notes=None) -> OpResult:
        """Push the old state, install the new one, log, and build the OpResult.
        ``box``: the new image differs from the current one only inside it (lets the
        metrics update incrementally); None: anywhere."""
        prev = self.current
        if self.current is not None:
            self.history.push(self._snapshot(op))
        if lr_change is not None:
            lr, hr, cond = lr_change
            self._set_lr(lr, cond)
            self.hr = hr
        if gallery is not None:
            self.gallery = gallery
        self.latents, self._raw = latents, raw
        self.current = self._show(raw)
        self.history.trim(self._snapshot())
        if self.lr_projection or lr_change is not None:
            box = None                                  # the projection changes every pixel
        metrics = self._measure(self.current, to_uint8(raw) if self.lr_projection else None, box, prev)
        seconds = time.perf_counter() - t0
        warnings, notes = list(warnings or []), list(notes or [])
        entry = {"op": op, "params": params, "changed": changed, "seconds": round(seconds, 4),
                 "warnings": warnings, "lr_psnr": metrics["lr_psnr"]}
        if notes:
            entry["notes"] = notes
        self.log.append(entry)
        return OpResult(self.current, metrics, changed, seconds, extra or {}, warnings, notes)

    def _commit_edit(self, op: str, params: dict, changed: str, t0: float, dec: E.EditDecode, **kw) -> OpResult:
        """:meth:`_commit` of a region edit decoded by :meth:`_decode_edit`."""
        return self._commit(op, params, changed, t0, latents=dec.latents, raw=dec.raw, warnings=dec.warnings,
                            box=dec.box, notes=self._edit_notes(), **kw)

    # ------------------------------------------------------------- operations
    @torch.no_grad()
    def generate(self, temperature=0.8, seed=0, n=4) -> OpResult:
        """A gallery of ``n`` samples (seeds seed..seed+n-1); current = sample 0."""
        t0 = time.perf_counter()
        tau, seed = check_temperature(temperature), check_seed(seed)
        n = int(n)
        if n < 1 or n > limits.MAX_SAMPLES:
            raise ValueError(f"number of samples must be 1..{limits.MAX_SAMPLES}, got {n}")
        self._check_memory("generate", kept=n)
        items, warns = [], []
        for k in range(n):
            lat = self.model.draw_latents(self.cond, tau, seed + k, 1)
            imgs, lat, w = self.renderer.full(lat)
            warns += [f"sample {k} (seed {seed + k}): {m}" for m in w]
            img = self._show(imgs[0])
            items.append(GalleryItem(seed + k, tau, img, lat, cap(lr_psnr(img, self.lr, self.scale)), imgs[0]))
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
        tau, seed, d = check_temperature(temperature), check_seed(seed), check_dilation(dilation)
        masks = E.level_masks(m, self.latents, dilation=d)
        dec = self._decode_edit(E.resample_region(self.latents, masks, tau, seed), masks)
        n, k = E.count_masked(masks)
        return self._commit_edit("resample_region", {"temperature": tau, "seed": seed, "dilation": d,
                                                     "mask_pixels": int(m.sum()), "mask_sha1": _img_digest(m)},
                                 f"resampled {n} latents in {k} levels at temperature {tau:g} ({dec.how})", t0, dec)

    @torch.no_grad()
    def take_region_from(self, index: int, mask: np.ndarray, dilation=1) -> OpResult:
        """Copy gallery item ``index``'s latents inside ``mask`` (dilated)."""
        t0 = time.perf_counter()
        self._require_current()
        i = self._gallery_index(index)
        m = self._mask(mask)
        d = check_dilation(dilation)
        g = self.gallery[i]
        if any(a.shape != b.shape for a, b in zip(g.latents.levels, self.latents.levels)):
            raise ValueError("that sample belongs to a different image")
        masks = E.level_masks(m, self.latents, dilation=d)
        dec = self._decode_edit(E.take_region(self.latents, g.latents, masks), masks)
        n, k = E.count_masked(masks)
        return self._commit_edit("take_region_from", {"index": i, "seed": g.seed, "dilation": d,
                                                      "mask_pixels": int(m.sum()), "mask_sha1": _img_digest(m)},
                                 f"took {n} latents in {k} levels from sample {i} ({dec.how})", t0, dec)

    @torch.no_grad()
    def normalize(self, mode='local', temperature=0.8, seed=0, mask=None) -> OpResult:
        """Latent normalization (eqs. 6-7): 'global' | 'local' | 'spatial', optionally
        only inside a mask."""
        t0 = time.perf_counter()
        self._require_current()
        check_mode(mode)
        tau, seed = check_temperature(temperature), check_seed(seed)
        masks = None
        params = {"mode": mode, "temperature": tau, "seed": seed}
        if mask is not None:
            m = self._mask(mask)
            masks = E.level_masks(m, self.latents, dilation=0)
            params.update(mask_pixels=int(m.sum()), mask_sha1=_img_digest(m))
        lat, info = E.normalize(self.latents, mode, tau, seed, masks, return_info=True)
        if masks is None:
            imgs, lat, warns = self.renderer.full(lat)
            dec = E.EditDecode(imgs[0], lat, warns, "full decode", None)
        else:
            dec = self._decode_edit(lat, masks)
        changed = (f"{mode} normalization of {info.collections} latent collection(s) to temperature {tau:g}"
                   + (" inside the mask" if masks is not None else "") + f" ({dec.how})")
        if info.notes:
            changed += "; " + "; ".join(info.notes)
        return self._commit("normalize", params, changed, t0, latents=dec.latents, raw=dec.raw,
                            warnings=dec.warnings, box=dec.box,
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
        src = check_image(source, "the source image")
        check_mode(mode)
        tau, seed, d = check_temperature(temperature), check_seed(seed), check_dilation(dilation)
        if not (hasattr(src_box, "__len__") and len(src_box) == 4):
            raise ValueError("the source box must be (y0, x0, y1, x1)")
        if not (hasattr(dst_yx, "__len__") and len(dst_yx) == 2 and hasattr(dst_hw, "__len__") and len(dst_hw) == 2):
            raise ValueError("the destination must be given as (y, x) and (height, width)")
        H, W = self.hr_size
        try:
            dh, dw = int(dst_hw[0]), int(dst_hw[1])
        except (TypeError, ValueError):
            raise ValueError("the destination size must be two integers (height, width)") from None
        if dh > H or dw > W:
            raise ValueError(f"the destination size {dw}×{dh} (width×height) is larger than the image "
                             f"({W}×{H}); choose at most {W}×{H}")
        pasted, m = E.paste(self.current, src, src_box, dst_yx, dst_hw)
        pasted_t = to_tensor(pasted)[None].to(self.device, self.dtype)
        lat, masks = E.content_transfer(self.model, self.cond, self.latents, pasted_t, m, mode, tau, seed, d,
                                        self.splice_margin)
        dec = self._decode_edit(lat, masks)
        raw_psnr = cap(lr_psnr(pasted, self.lr, self.scale))
        n, k = E.count_masked(masks)
        res = self._commit_edit(
            "transfer", {"src_box": [int(v) for v in src_box], "dst_yx": [int(v) for v in dst_yx],
                         "dst_hw": [int(v) for v in dst_hw], "mode": mode, "temperature": tau, "seed": seed,
                         "dilation": d, "source_shape": list(src.shape), "source_sha1": _img_digest(src)},
            f"pasted a {int(dst_hw[0])}x{int(dst_hw[1])} region and harmonized {n} latents in {k} levels "
            f"({mode} normalization, {dec.how})", t0, dec)
        res.extra.update(raw=pasted, raw_lr_psnr=raw_psnr, harmonized_lr_psnr=res.metrics["lr_psnr"])
        return res

    @torch.no_grad()
    def style_transfer(self, style: np.ndarray, mask: np.ndarray | None = None, strength: float = 1.0) -> OpResult:
        """Style transfer by latent statistics: the style image is encoded once at a
        small size (:data:`flow.editing.STYLE_LR_SIDE`² LR, cached per session, see
        :meth:`style_stats`) and the per-level channel statistics of the current
        latents -- everywhere, or only inside ``mask`` -- are moved to the style's
        (:func:`flow.editing.match_statistics`, blended by ``strength`` in [0, 1]),
        then decoded with this LR.  The image keeps its own structure; the style
        image's content is not carried over.  Without a current image, the sample of
        seed 0 at temperature 0.8 is styled."""
        t0 = time.perf_counter()
        st = check_image(style, "the style image")
        try:
            a = float(strength)
        except (TypeError, ValueError):
            raise ValueError(f"strength must be a number in [0, 1], got {strength!r}") from None
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength!r}")
        digest = _img_digest(st)
        params = {"style_shape": list(st.shape), "style_sha1": digest, "strength": a}
        if mask is not None:
            self._require_current()
            m = self._mask(mask)
            params.update(mask_pixels=int(m.sum()), mask_sha1=_img_digest(m))
        stats, style_hr, hit = self.style_stats(st, digest)
        lat = self.latents if self.latents is not None else self.model.draw_latents(self.cond, 0.8, 0, 1)
        how = "cached style statistics" if hit else f"style encoded at {E.STYLE_LR_SIDE}² LR"
        if mask is not None:
            masks = E.level_masks(m, lat, dilation=0)
            dec = self._decode_edit(E.match_statistics(lat, stats, a, masks), masks)
            n, k = E.count_masked(masks)
            res = self._commit_edit("style_transfer", params, f"style statistics in {n} positions of {k} levels "
                                    f"(strength {a:g}, {how}, {dec.how})", t0, dec)
        else:
            imgs, lat, warns = self.renderer.full(E.match_statistics(lat, stats, a))
            res = self._commit("style_transfer", params, f"style statistics everywhere (strength {a:g}, {how}, "
                               "full decode)", t0, latents=lat, raw=imgs[0], warnings=warns)
        res.extra.update(style_hr=style_hr, style_cache_hit=hit)
        return res

    def style_stats(self, style: np.ndarray, digest: str | None = None):
        """``(StyleStats, style image at the HR size, cache hit)`` of a uint8 style image;
        the session keeps the last :data:`app.limits.STYLE_CACHE` of them (by content)."""
        key = (digest or _img_digest(style), self.hr_size)
        hit = key in self._style_cache
        if hit:
            self._style_cache.move_to_end(key)
        else:
            H, W = self.hr_size
            self._style_cache[key] = (E.style_statistics(self.model, style, device=self.device, dtype=self.dtype),
                                      E.fit_image(style, H, W))
            while len(self._style_cache) > limits.STYLE_CACHE:
                self._style_cache.popitem(last=False)
        stats, style_hr = self._style_cache[key]
        return stats, style_hr, hit

    @torch.no_grad()
    def restore(self, degraded: np.ndarray, temperature=0.8, seed=0) -> OpResult:
        """Restoration (§4.5) of a degraded HR photo: the session LR becomes its MATLAB
        downscale; its latents get spatial then local normalization.  The gallery is
        cleared (it belonged to the old LR); the HR ground truth is kept when it has
        the same size."""
        t0 = time.perf_counter()
        deg = check_image(degraded, "the degraded photo")
        s = self.scale
        Hd, Wd = deg.shape[0] // s * s, deg.shape[1] // s * s
        if min(Hd, Wd) < limits.MIN_LR_SIDE * s:
            raise ValueError(f"the degraded photo is {deg.shape[1]}x{deg.shape[0]}: at least "
                             f"{limits.MIN_LR_SIDE * s}x{limits.MIN_LR_SIDE * s} pixels are needed")
        limits.check_lr_side("the degraded photo", Hd // s, Wd // s, self.max_lr_side)
        self._check_memory("restore", Hd, Wd, kept=2)
        deg = np.ascontiguousarray(deg[:Hd, :Wd])
        tau, seed = check_temperature(temperature), check_seed(seed)
        new_lr = make_lr(deg, s)
        lr_t = to_tensor(new_lr)[None].to(self.device, self.dtype)
        cond = self.model.encode_condition(lr_t, cache=True)
        z, _ = self.model.encode(to_tensor(deg)[None].to(self.device, self.dtype), cond)
        z = E.restore_latents(z, tau, seed)
        hr = self.hr if self.hr is not None and self.hr.shape == deg.shape else None
        renderer = E.Renderer(self.model, cond, imresize(new_lr, float(s)))     # the new LR's context
        imgs, z, warns = renderer.full(z)
        sr_imgs, _, _ = renderer.full(self.model.draw_latents(cond, tau, seed, 1))
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
        # a model without exact reconstruction (HCFlow) decodes every image from the LR, not
        # from the encode's continuous top level, so its ground truth comes back only approximately
        notes = [] if self.model.exact_reconstruction else [
            f"{family(self.model.family).label} decodes the encoded ground truth from the LR (not from the "
            "photo's own coarse level), so the current image is close to the ground truth, not equal (see PSNR)"]
        imgs, z, warns = self.renderer.full(z)
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
        metrics = self._measure(self.current, to_uint8(self._raw) if self.lr_projection else None)
        seconds = time.perf_counter() - t0
        self.log.append({"op": label, "params": {}, "changed": label, "seconds": round(seconds, 4),
                         "warnings": [], "lr_psnr": metrics["lr_psnr"]})
        return OpResult(self.current, metrics, label, seconds, {}, [])

    def undo(self) -> OpResult | None:
        """Back to the state before the last operation (None: nothing to undo)."""
        return self._travel("undo", self.history.undo)

    def redo(self) -> OpResult | None:
        """Forward again (None: nothing to redo)."""
        return self._travel("redo", self.history.redo)

    def _travel(self, word: str, step) -> OpResult | None:
        t0 = time.perf_counter()
        st = step(self._snapshot())
        if st is None:
            return None
        self._restore_state(st)
        return self._replay(f"{word} {st.label}", t0)

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        """One safetensors file: LR, HR, latents, raw/current image, gallery and the
        edit log; metadata carries the model identity and a checksum."""
        save_session(self, path)

    @classmethod
    def load(cls, path, model, **kw) -> "EditSession":
        """Open a session file with ``model`` (the one it was saved with); ``kw``: the
        constructor's keywords (history and hosting limits, checked against the file's
        sizes before anything is decoded); see :func:`app.session.files.load_session`."""
        return load_session(cls, path, model, **kw)
