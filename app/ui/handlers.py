"""The app's handlers: :class:`Studio`, one method per action of the page (and of the API),
each a thin wrapper around :class:`app.session.EditSession` or :mod:`app.engine` (the
editing logic lives there).  The layout (:mod:`app.ui.layout`) wires them to components;
what they show is formatted by :mod:`app.ui.views`.

Hosting rules implemented here:

* **per-tab state**: each browser tab (each ``gradio_client.Client``) owns one
  :class:`TabState` in a ``gr.State``; nothing mutable lives at module level, so one
  user's edits never reach another.  A per-tab lock serialises that tab's own
  requests when the server runs several at once (``--concurrency`` > 1);
* **models** are loaded once and shared read-only (inference only);
* **files**: uploads are decoded by :func:`app.images.load_rgb` (size, pixel and
  format limits); downloads are written to a private per-app temp directory,
  removed at exit; no ``allowed_paths`` are added, so nothing else of the
  server's file system is served;
* **errors**: ``ValueError`` (bad arguments, bad images, bad session files,
  checkpoint mismatches) becomes ``gr.Error`` with its message; anything else
  is logged on the server and reported as a short internal error — never a
  traceback — and the server keeps running;
* **limits** come from :mod:`app.limits`, the same the session enforces.
"""
from __future__ import annotations

import atexit
import functools
import json
import logging
import math
import shutil
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from app import engine
from app.images import MAX_BYTES, ImageInputError, fit_max_side, load_rgb
from app.limits import check_action
from app.limits import (HISTORY_MB, HISTORY_STEPS, MAX_ACTION_MB, MAX_DILATION, MAX_LR_SIDE, MAX_SAMPLES,
                        MAX_SEED, MAX_TEMPERATURE, MIN_LR_SIDE)
from app.models import Catalog
from app.session import EditSession, SessionFileError
from flow.ops.imresize import make_lr

from .views import ImageFiles, Previews, Views, caption, fmt_db, gallery_key, hr_shape, metrics_text, status_text

log = logging.getLogger("srflow.ui")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "assets" / "examples"
SESSION_SUFFIX = ".srflow"


# ----------------------------------------------------------------------------
# per-tab state
# ----------------------------------------------------------------------------

class TabState:
    """Everything one browser tab owns; lives in that tab's ``gr.State`` only."""

    def __init__(self):
        self.session = None            # EditSession | None
        self.model_name: str | None = None
        self.origin = None             # ("lr" | "hr", uint8 image) as loaded, for a model switch
        self.lock = threading.RLock()
        self.lr_projection = 0.0       # exact LR projection strength for this tab's sessions
        self.gallery_key = None        # what the gallery view currently shows
        self.uncertainty_key = None
        self.uncertainty_img = None
        self.previews = None           # views.Previews of the action that made the current image

    def __deepcopy__(self, memo):      # gradio never needs a copy; be explicit about sharing
        return self


# ----------------------------------------------------------------------------
# errors and arguments
# ----------------------------------------------------------------------------

def guarded(fn):
    """Map user errors to ``gr.Error``; log and summarise anything unexpected."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, SessionFileError) as e:
            raise gr.Error(str(e) or type(e).__name__, print_exception=False) from None
        except MemoryError:
            log.exception("out of memory in %s", fn.__name__)
            raise gr.Error("Out of memory: try a smaller image or fewer samples.",
                           print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - never a traceback to the user
            log.exception("internal error in %s", fn.__name__)
            raise gr.Error(f"Internal error ({type(e).__name__}) in {fn.__name__.strip('_')}; "
                           "the server is still running. Details are in the server log.",
                           print_exception=False) from None
    return wrapper


def number(v, name: str, lo=None, hi=None, integer=False):
    """A form value as a finite number (int with ``integer``) within [lo, hi]; ValueError otherwise."""
    if v is None or (isinstance(v, str) and not v.strip()):
        raise ValueError(f"{name} is missing")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {v!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite")
    if integer:
        if x != int(x):
            raise ValueError(f"{name} must be a whole number, got {v!r}")
        x = int(x)
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        raise ValueError(f"{name} must be between {lo} and {hi}, got {v}")
    return x


# ----------------------------------------------------------------------------
# the app
# ----------------------------------------------------------------------------

class Studio:
    """Handlers (thin wrappers around EditSession) plus the shared, read-only config."""

    def __init__(self, models: dict, max_side: int = MAX_LR_SIDE, max_upload_bytes: int = MAX_BYTES,
                 history: int = HISTORY_STEPS, max_history_mb: int = HISTORY_MB,
                 max_action_mb: float = MAX_ACTION_MB):
        if not models:
            raise ValueError("no model given")
        self.catalog = Catalog(models)
        self.models, self.infos = self.catalog.models, self.catalog.infos
        self.max_side = int(max_side)
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_action_mb = float(max_action_mb)
        # every session of a tab: at most ``history`` undo steps and ``max_history_mb`` of memory;
        # the hosting limits (LR side, memory estimate per action), also for uploaded session files
        self.history_kw = dict(history=int(history), max_history_bytes=int(max_history_mb) * 2**20,
                               max_lr_side=self.max_side, max_action_mb=self.max_action_mb)
        self.out_dir = Path(tempfile.mkdtemp(prefix="srflow-studio-"))
        atexit.register(shutil.rmtree, self.out_dir, ignore_errors=True)
        self.files = ImageFiles(self.out_dir)
        self.view = Views(self.files)
        self.examples = self._load_examples()

    # -- small helpers ---------------------------------------------------------
    def _load_examples(self) -> list[tuple[str, np.ndarray]]:
        out = []
        for p in sorted(EXAMPLES_DIR.glob("*.png")):
            try:
                out.append((p.stem.replace("_", " "), load_rgb(p)[0]))
            except ImageInputError as e:  # a broken bundled example must not stop the app
                log.warning("skipping example %s: %s", p, e)
        return out

    def _model(self, name):
        return self.catalog.get(name)

    @staticmethod
    def _tab(tab) -> TabState:
        return tab if isinstance(tab, TabState) else TabState()

    @staticmethod
    def _need(tab):
        if not isinstance(tab, TabState) or tab.session is None:
            raise ValueError("Load an image first (Input tab, or /load_image).")
        return tab.session

    def _decode(self, path, what: str) -> tuple[np.ndarray, list[str]]:
        if path is None or (isinstance(path, str) and not path):
            raise ValueError(f"Upload {what} first.")
        name = f"{what} ({Path(str(path)).name})"
        return load_rgb(path, max_bytes=self.max_upload_bytes, name=name)

    @staticmethod
    def _fit(img: np.ndarray, max_side: int, min_side: int, what: str, too_small: str):
        """Downsize ``img`` to ``max_side``; refuse, naming the upload's own size, when its
        short side is (or would become) under ``min_side``."""
        h, w = img.shape[:2]
        out, note = fit_max_side(img, max_side)
        if min(out.shape[:2]) < min_side:
            if out.shape[:2] != (h, w):
                raise ValueError(f"{what} is {w}×{h}: too narrow. Downsized to this server's limit of {max_side} px "
                                 f"on the longest side it would be {out.shape[1]}×{out.shape[0]}, under the "
                                 f"{min_side} px minimum{too_small}. Crop it to an aspect ratio of at most "
                                 f"{max_side // min_side}:1.")
            raise ValueError(f"{what} is {w}×{h}: too small{too_small} (need at least {min_side}×{min_side})")
        return out, note

    def _fit_hr(self, img: np.ndarray, scale: int, what: str):
        """An HR image: downsize so that its LR fits --max-side; refuse if too small."""
        return self._fit(img, self.max_side * scale, MIN_LR_SIDE * scale, what,
                         f" for {scale}× (its LR would be under {MIN_LR_SIDE} pixels)")

    def _make_session(self, model, kind: str, img: np.ndarray):
        notes = []
        if kind == "hr":
            img, note = self._fit_hr(img, model.scale, "the HR photo")
            sess = EditSession.from_hr(model, img, **self.history_kw)
        else:
            img, note = self._fit(img, self.max_side, MIN_LR_SIDE, "the image", " for an LR image")
            sess = EditSession(model, img, **self.history_kw)
        if note:
            notes.append(note)
        return sess, notes

    # -- input -----------------------------------------------------------------
    def _load(self, tab, kind, img, notes, model_name, what):
        tab = self._tab(tab)
        name, model = self._model(model_name)
        with tab.lock:
            t0 = time.perf_counter()
            sess, more = self._make_session(model, kind, img)
            if tab.lr_projection and hasattr(sess, "lr_projection"):
                sess.lr_projection = tab.lr_projection
            tab.session, tab.model_name, tab.origin = sess, name, (kind, img)
            tab.gallery_key = tab.uncertainty_key = tab.uncertainty_img = tab.previews = None
            dt = time.perf_counter() - t0
        lr = sess.lr
        text = (f"loaded {what}: LR {lr.shape[1]}×{lr.shape[0]} → SR {lr.shape[1] * sess.scale}×"
                f"{lr.shape[0] * sess.scale} with {name} ({sess.scale}×)"
                + (" · ground truth available" if sess.hr is not None else "") + f" · {dt:.2f} s"
                + (" — next: Generate (Explore tab)" if sess.current is None else ""))
        text = "\n".join([text] + [f"ℹ {n}" for n in self.catalog.notes(name)]
                          + [f"⚠ {n}" for n in notes + more])
        return tab, self.files.png(lr), self.files.png(sess.current), text

    @guarded
    def load_image(self, tab, file, downscale_first, model_name, progress=gr.Progress()):
        progress(0.1, desc="Decoding image")
        img, notes = self._decode(file, "the image")
        progress(0.3, desc="Encoding LR")
        kind = "hr" if downscale_first else "lr"
        return self._load(tab, kind, img, notes, model_name,
                          "HR photo (downscaled first)" if kind == "hr" else "LR image")

    @guarded
    def load_example(self, tab, index, downscale_first, model_name, progress=gr.Progress()):
        i = number(index, "example index", 0, len(self.examples) - 1, integer=True)
        name, img = self.examples[i]
        kind = "hr" if downscale_first else "lr"
        progress(0.3, desc="Encoding LR")
        return self._load(tab, kind, img.copy(), [], model_name, f"example “{name}”")

    @guarded
    def set_lr_projection(self, tab, alpha):
        a = number(alpha, "LR projection strength", 0, 1)
        tab = self._tab(tab)
        with tab.lock:
            tab.lr_projection = a
            if tab.session is not None:
                if not hasattr(tab.session, "lr_projection"):
                    raise ValueError("this session does not support the exact LR projection")
                tab.session.lr_projection = a
        return tab, (f"exact LR projection strength α = {a:g}: applies to the next results"
                     if a else "exact LR projection off (α = 0): applies to the next results")

    @guarded
    def set_model(self, tab, model_name, progress=gr.Progress()):
        name, model = self._model(model_name)
        if not isinstance(tab, TabState) or tab.origin is None:
            tab = self._tab(tab)
            tab.model_name = name
            return tab, gr.skip(), gr.skip(), f"model: {name} ({model.scale}×) — load an image"
        kind, img = tab.origin
        progress(0.3, desc="Encoding LR with the new model")
        return self._load(tab, kind, img, [], name, "the same input again")

    # -- explore ---------------------------------------------------------------
    @guarded
    def generate(self, tab, temperature, seed, n, progress=gr.Progress()):
        sess = self._need(tab)
        t = number(temperature, "temperature", 0, MAX_TEMPERATURE)
        s = number(seed, "seed", 0, MAX_SEED, integer=True)
        k = number(n, "number of samples", 1, MAX_SAMPLES, integer=True)
        progress(0.05, desc=f"Sampling {k} image(s) at τ={t:g}")
        with tab.lock:
            res = sess.generate(temperature=t, seed=s, n=k)
        gallery = [(self.files.png(it.image), caption(it)) for it in res.extra.get("gallery", sess.gallery)]
        tab.gallery_key = gallery_key(sess)
        return tab, gallery, self.files.png(res.image), status_text(res)

    @guarded
    def pick(self, tab, index):
        sess = self._need(tab)
        i = number(index, "sample index", 0, None, integer=True)
        with tab.lock:
            res = sess.pick(i)
        return tab, self.files.png(res.image), status_text(res)

    def select_sample(self, evt: gr.SelectData):
        return evt.index

    # -- brush -----------------------------------------------------------------
    @staticmethod
    def mask_from_editor(editor, shape) -> np.ndarray:
        """Brush mask = union of ``alpha > 0`` over the editor's layers, at ``shape``."""
        if not isinstance(editor, dict):
            raise ValueError("Paint over the region first (Brush tab): no brush strokes received.")
        H, W = shape
        mask = None
        for layer in editor.get("layers") or []:
            if layer is None:
                continue
            a = np.asarray(layer)
            if a.ndim == 3 and a.shape[2] == 4:
                m = a[..., 3] > 0
            elif a.ndim == 3:
                m = a.max(axis=2) > 0          # a layer without alpha: any non-black paint
            else:
                m = a > 0
            if m.shape != (H, W):
                m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(
                    (W, H), Image.Resampling.NEAREST)) > 0
            mask = m if mask is None else (mask | m)
        if mask is None or not mask.any():
            raise ValueError("Paint over the region first (Brush tab): the brush mask is empty.")
        return mask

    @guarded
    def resample_region(self, tab, editor, temperature, seed, dilation, progress=gr.Progress()):
        sess = self._need(tab)
        t = number(temperature, "region temperature", 0, MAX_TEMPERATURE)
        s = number(seed, "region seed", 0, MAX_SEED, integer=True)
        d = number(dilation, "dilation", 0, MAX_DILATION, integer=True)
        mask = self.mask_from_editor(editor, hr_shape(sess))
        progress(0.1, desc="Resampling the region")
        with tab.lock:
            res = sess.resample_region(mask, temperature=t, seed=s, dilation=d)
        return tab, self.files.png(res.image), status_text(res, extra=f"{int(mask.sum())} px brushed"), s + 1

    @guarded
    def take_region(self, tab, editor, index, dilation, progress=gr.Progress()):
        sess = self._need(tab)
        i = number(index, "sample index", 0, None, integer=True)
        d = number(dilation, "dilation", 0, MAX_DILATION, integer=True)
        mask = self.mask_from_editor(editor, hr_shape(sess))
        progress(0.1, desc=f"Taking the region from sample {i}")
        with tab.lock:
            res = sess.take_region_from(i, mask, dilation=d)
        return tab, self.files.png(res.image), status_text(res)

    @guarded
    def normalize(self, tab, mode, temperature, seed, use_mask, editor, progress=gr.Progress()):
        sess = self._need(tab)
        t = number(temperature, "temperature", 0, MAX_TEMPERATURE)
        s = number(seed, "seed", 0, MAX_SEED, integer=True)
        mask = self.mask_from_editor(editor, hr_shape(sess)) if use_mask else None
        progress(0.1, desc=f"{mode} latent normalization")
        with tab.lock:
            res = sess.normalize(mode=str(mode), temperature=t, seed=s, mask=mask)
        return tab, self.files.png(res.image), status_text(res)

    # -- transfer / style --------------------------------------------------------
    @guarded
    def transfer(self, tab, source, y0, x0, y1, x1, dst_y, dst_x, dst_h, dst_w, mode, temperature,
                 seed, progress=gr.Progress()):
        sess = self._need(tab)
        src, notes = self._decode(source, "the source image")
        box = tuple(number(v, n, 0, None, integer=True) for v, n in
                    zip((y0, x0, y1, x1), ("box y0", "box x0", "box y1", "box x1")))
        dyx = (number(dst_y, "destination y", 0, None, integer=True),
               number(dst_x, "destination x", 0, None, integer=True))
        h = number(dst_h, "destination height", 0, None, integer=True)
        w = number(dst_w, "destination width", 0, None, integer=True)
        if h == 0 and w == 0:                       # 0 × 0: keep the box size
            h, w = box[2] - box[0], box[3] - box[1]
        t = number(temperature, "temperature", 0, MAX_TEMPERATURE)
        s = number(seed, "seed", 0, MAX_SEED, integer=True)
        progress(0.1, desc="Pasting and harmonizing")
        with tab.lock:
            res = sess.transfer(src, src_box=box, dst_yx=dyx, dst_hw=(h, w), mode=str(mode),
                                temperature=t, seed=s)
            ex, raw, harmonized = res.extra, self.files.png(res.extra.get("raw")), self.files.png(res.image)
            tab.previews = Previews(res.image, raw_view=raw, harm_view=harmonized)
        extra = f"LR-PSNR raw paste {fmt_db(ex.get('raw_lr_psnr'))} → harmonized {fmt_db(ex.get('harmonized_lr_psnr'))}"
        return tab, raw, harmonized, status_text(res, notes, extra)

    @guarded
    def style_transfer(self, tab, style, use_mask, editor, progress=gr.Progress()):
        sess = self._need(tab)
        img, notes = self._decode(style, "the style image")
        mask = self.mask_from_editor(editor, hr_shape(sess)) if use_mask else None
        progress(0.1, desc="Encoding the style image")
        with tab.lock:
            res = sess.style_transfer(img, mask=mask)
            tab.previews = Previews(res.image, style_view=self.files.png(res.extra.get("style_hr")))
        return tab, tab.previews.views["style_view"], self.files.png(res.image), status_text(res, notes)

    @guarded
    def use_hr(self, tab, progress=gr.Progress()):
        sess = self._need(tab)
        progress(0.1, desc="Encoding the ground truth")
        with tab.lock:
            res = sess.use_hr()
        return tab, self.files.png(res.image), status_text(res)

    @guarded
    def preview_source(self, file):
        if not file:
            return gr.update(value=None, label="Source preview")
        img, notes = self._decode(file, "the source image")
        note = f" — {'; '.join(notes)}" if notes else ""
        return gr.update(value=self.files.png(img), label=f"Source preview: {img.shape[1]}×{img.shape[0]} "
                                                   f"(x, y from the top left){note}")

    # -- restore -----------------------------------------------------------------
    @guarded
    def restore(self, tab, degraded, temperature, seed, model_name, progress=gr.Progress()):
        img, notes = self._decode(degraded, "the degraded photo")
        t = number(temperature, "temperature", 0, MAX_TEMPERATURE)
        s = number(seed, "seed", 0, MAX_SEED, integer=True)
        tab = self._tab(tab)
        with tab.lock:
            # an open session keeps its model; otherwise the selected one
            name, model = self._model(tab.model_name if tab.session is not None else model_name)
            img, note = self._fit_hr(img, model.scale, "the degraded photo")
            if note:
                notes.append(note)
            progress(0.1, desc="Restoring")
            if tab.session is None:        # a session on the photo's own LR, without ground truth
                sc = model.scale
                crop = img[:img.shape[0] // sc * sc, :img.shape[1] // sc * sc]
                tab.session = EditSession(model, make_lr(crop, sc), **self.history_kw)
                tab.model_name = name
            res = tab.session.restore(img, temperature=t, seed=s)
            tab.origin = ("lr", tab.session.lr)       # a model switch re-encodes the new LR
            tab.gallery_key = None
            pair = (self.files.png(res.extra.get("input", img)), self.files.png(res.image))
            tab.previews = Previews(res.image, restore_view=pair,
                                    sr_lr_view=self.files.png(res.extra.get("sr_from_lr")))
        return tab, pair, tab.previews.views["sr_lr_view"], status_text(res, notes)

    # -- rescale / compare (app/engine.py) -----------------------------------------
    @guarded
    def rescale(self, file, model_name, sr_model_name, progress=gr.Progress()):
        """Rescaling round trip of an HR photo (independent of the tab's editing session)."""
        r_default, sr_default = self.catalog.rescale_defaults()
        name = model_name or r_default
        if name is None:
            raise ValueError("No rescaling model is loaded: start the app with an HCFlow rescaling model "
                             "(assets/hcflow_rescaling_4x.safetensors or --model PATH).")
        name, model = self._model(name)
        if self.infos[name].kind != "rescaling":
            raise ValueError(f"{name} is not a rescaling model; choose one of: "
                             + (", ".join(n for _, n in self.catalog.choices(kind="rescaling")) or "none loaded"))
        sr_name = sr_model_name or sr_default
        sr_model = None
        if sr_name:
            sr_name, sr_model = self._model(sr_name)
        img, notes = self._decode(file, "the HR photo")
        img, note = self._fit_hr(img, model.scale, "the HR photo")
        if note:
            notes.append(note)
        check_action(f"rescale with {name}", *img.shape[:2], kept=2, max_mb=self.max_action_mb)
        if sr_model is not None:
            check_action(f"rescale's comparison with {sr_name}", *img.shape[:2], max_mb=self.max_action_mb)
        progress(0.2, desc="Downscaling and upscaling with the flow")
        res = engine.rescale(model, img, sr_model, sr_name)
        notes += res.notes
        lr_path = self.files.new_path(f"flow_lr_{res.scale}x.png")
        Image.fromarray(res.flow_lr).save(lr_path, format="PNG")
        m = res.metrics
        H, W = res.hr.shape[:2]
        lines = [f"rescaled a {W}×{H} photo with {name}: flow LR {W // res.scale}×{H // res.scale} (8-bit) → "
                 f"reconstruction at τ = 0 · {res.seconds:.2f} s",
                 f"flow LR vs bicubic LR: PSNR {fmt_db(m['lr_psnr_flow_vs_bicubic'])}",
                 f"reconstruction vs HR: PSNR {fmt_db(m['psnr_reconstruction'])} · "
                 f"SSIM {m['ssim_reconstruction']:.4f}",
                 (f"bicubic LR → {sr_name} (τ = 0) vs HR: PSNR {fmt_db(m['psnr_sr_from_bicubic'])} · "
                  f"SSIM {m['ssim_sr_from_bicubic']:.4f}" if sr_model is not None
                  else "no SR model for the bicubic comparison"),
                 f"bicubic LR → bicubic upscaling vs HR: PSNR {fmt_db(m['psnr_bicubic_up'])}"]
        lines += [f"⚠ {n}" for n in notes + res.warnings]
        metrics = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()}
        metrics.update(model=name, hr_size=[H, W], notes=notes)
        return (self.files.png(res.flow_lr), self.files.png(res.reconstruction),
                self.files.png(res.sr_from_bicubic) if res.sr_from_bicubic is not None else None,
                str(lr_path), metrics, "\n".join(lines))

    @guarded
    def compare(self, tab, model_a, model_b, temperature, seed, progress=gr.Progress()):
        """One sample of each of two models for the tab's LR, same seed and τ."""
        sess = self._need(tab)
        t = number(temperature, "temperature", 0, MAX_TEMPERATURE)
        sd = number(seed, "seed", 0, MAX_SEED, integer=True)
        da, db = self.catalog.compare_defaults()
        names = [self._model(model_a or da)[0], self._model(model_b or db)[0]]
        with tab.lock:
            lr, hr = sess.lr, sess.hr
        for n in dict.fromkeys(names):           # each model decodes at its own scale
            sc = int(self.models[n].scale)
            check_action(f"compare with {n}", lr.shape[0] * sc, lr.shape[1] * sc, max_mb=self.max_action_mb)
        progress(0.1, desc="Sampling with both models")
        items = engine.compare({n: self.models[n] for n in dict.fromkeys(names)}, lr, hr, t, sd)
        if len(items) == 1:
            items = items * 2
        lines = [f"same LR {lr.shape[1]}×{lr.shape[0]}, seed {sd}, τ = {t:g} (each model draws its own "
                 "latents from the seed)"]
        for it in items[:2] if names[0] != names[1] else items[:1]:
            lines.append(f"{it.info.label}: {metrics_text(it.metrics)} · {it.seconds:.2f} s")
            lines += [f"⚠ {it.name}: {w}" for w in it.warnings]
        lines[1:1] = [f"A = {items[0].info.label} · B = {items[1].info.label}"]
        return self.files.png(items[0].image), self.files.png(items[1].image), "\n".join(lines)

    # -- history / files ------------------------------------------------------------
    @guarded
    def undo(self, tab):
        return self._travel(tab, "undo")

    @guarded
    def redo(self, tab):
        return self._travel(tab, "redo")

    def _travel(self, tab, word: str):
        sess = self._need(tab)
        with tab.lock:
            res = getattr(sess, word)()
        if res is None:
            return tab, self.files.png(sess.current), f"nothing to {word}"
        return tab, self.files.png(res.image), status_text(res)

    @guarded
    def download_png(self, tab):
        sess = self._need(tab)
        if sess.current is None:
            raise ValueError("Nothing to download yet: generate a result first.")
        path = self.files.new_path(f"srflow_{sess.scale}x.png")
        Image.fromarray(np.asarray(sess.current, dtype=np.uint8)).save(path, format="PNG")
        return str(path)

    @guarded
    def download_session(self, tab):
        sess = self._need(tab)
        path = self.files.new_path(f"session{SESSION_SUFFIX}")
        with tab.lock:
            sess.save(path)
        return str(path)

    @guarded
    def upload_session(self, tab, file, model_name, progress=gr.Progress()):
        if file is None:
            raise ValueError("Choose a session file to upload.")
        size = Path(str(file)).stat().st_size
        if size == 0:
            raise ValueError("the session file is empty (0 bytes)")
        tab = self._tab(tab)
        first, _ = self._model(model_name)
        order = [first] + [n for n in self.models if n != first]
        err = None
        progress(0.2, desc="Reading the session file")
        for name in order:                     # the selected model first, then the others
            try:
                sess = EditSession.load(str(file), self.models[name], **self.history_kw)
                break
            except SessionFileError as e:
                err = err or e
        else:
            raise err
        with tab.lock:
            tab.session, tab.model_name = sess, name
            tab.origin = ("hr", sess.hr) if sess.hr is not None else ("lr", sess.lr)
            tab.lr_projection = float(getattr(sess, "lr_projection", 0.0) or 0.0)
            tab.gallery_key = tab.uncertainty_key = tab.uncertainty_img = tab.previews = None
        note = "" if name == first else f" (with model {name}, the one it was made with)"
        return tab, self.files.png(sess.lr), self.files.png(sess.current), name, f"session restored{note}: {len(sess.gallery)} " \
            f"gallery sample(s), undo {'available' if sess.can_undo else 'empty'}"

    @guarded
    def info(self, tab):
        if not isinstance(tab, TabState) or tab.session is None:
            return {"loaded": False, "models": {n: i.as_dict() for n, i in self.infos.items()}}
        with tab.lock:
            return self._info(tab)

    @staticmethod
    def _info(tab):
        s = tab.session
        return {
            "loaded": True, "model": tab.model_name, "scale": int(s.scale),
            "family": s.model.family, "local_edits": bool(s.model.supports_region),
            "lr_size": [int(s.lr.shape[0]), int(s.lr.shape[1])],
            "hr_size": None if s.current is None else [int(s.current.shape[0]), int(s.current.shape[1])],
            "ground_truth": s.hr is not None, "can_undo": bool(s.can_undo), "can_redo": bool(s.can_redo),
            "gallery": [{"seed": int(g.seed), "temperature": float(g.temperature),
                         "lr_psnr": None if g.lr_psnr is None or not math.isfinite(g.lr_psnr)
                         else float(g.lr_psnr)} for g in s.gallery],
            "log": json.loads(json.dumps(list(s.log)[-50:], default=str)),
        }

    # -- views (private; after every action) ------------------------------------
    def views(self, tab, editor, use_gt):
        """Every view of the tab from its session (:data:`app.ui.views.VIEW_NAMES`)."""
        return self.view.refresh(tab, editor, use_gt)
