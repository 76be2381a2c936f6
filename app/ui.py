"""SRFlow Studio: the Gradio front end.

``build_demo(models, max_side, queue_size, concurrency)`` returns a queued
``gr.Blocks``.  Every handler is a thin wrapper around :class:`app.session.EditSession`
(the editing logic lives there); this module only decodes uploads
(:mod:`app.images`), keeps one session per browser tab, formats results and maps
errors to ``gr.Error``.

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
* **offline**: analytics off, no CDN assets, no run-history page.
"""
from __future__ import annotations

import atexit
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from app import limits  # noqa: E402
from app.images import MAX_BYTES, ImageInputError, fit_max_side, load_rgb  # noqa: E402
from app.models import describe  # noqa: E402

log = logging.getLogger("srflow.ui")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "assets" / "examples"
MAX_SAMPLES = limits.MAX_SAMPLES
MIN_LR_SIDE = limits.MIN_LR_SIDE
SESSION_SUFFIX = ".srflow"


def launch_kwargs(max_file_size: str | int | None = "20mb") -> dict:
    """The ``demo.launch`` keyword arguments the app needs (besides host/port)."""
    return dict(max_file_size=max_file_size, show_error=False, run_history=False,
                ssr_mode=False, mcp_server=False, footer_links=["api", "settings"])


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

    def __deepcopy__(self, memo):      # gradio never needs a copy; be explicit about sharing
        return self


def _session_mod():
    """Import the editing session lazily (keeps ``import app.ui`` light)."""
    from app import session as s
    return s


# ----------------------------------------------------------------------------
# helpers: errors, formatting
# ----------------------------------------------------------------------------

def _user_errors() -> tuple[type, ...]:
    errs: list[type] = [ValueError]
    try:
        errs.append(_session_mod().SessionFileError)
    except Exception:  # noqa: BLE001 - session module missing: ValueError still covers most
        pass
    return tuple(errs)


def guarded(fn):
    """Map user errors to ``gr.Error``; log and summarise anything unexpected."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except _user_errors() as e:
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


def _fmt_db(v) -> str:
    if v is None:
        return "n/a"
    v = float(v)
    if math.isinf(v):
        return "∞ dB"
    if math.isnan(v):
        return "n/a"
    return f"{v:.2f} dB"


def _metrics_text(m: dict) -> str:
    parts = []
    if m.get("lr_psnr") is not None:
        parts.append(f"LR-PSNR {_fmt_db(m['lr_psnr'])}"
                     + (f" (without the LR projection {_fmt_db(m['lr_psnr_raw'])})"
                        if m.get("lr_psnr_raw") is not None else ""))
    if m.get("psnr") is not None:
        parts.append(f"PSNR {_fmt_db(m['psnr'])}")
    if m.get("ssim") is not None:
        parts.append(f"SSIM {float(m['ssim']):.4f}")
    return " · ".join(parts)


def _status(res, notes=(), extra: str = "") -> str:
    head = [str(res.changed), f"{float(res.seconds):.2f} s"]
    mt = _metrics_text(res.metrics or {})
    if mt:
        head.append(mt)
    if extra:
        head.append(extra)
    lines = [" · ".join(head)]
    lines += [f"ℹ {n}" for n in getattr(res, "notes", None) or []]
    lines += [f"⚠ {w}" for w in list(notes) + list(res.warnings or [])]
    for w in res.warnings or []:          # numerical guard actions also pop up as toasts
        gr.Warning(str(w))
    return "\n".join(lines)


def _caption(item) -> str:
    return f"seed {int(item.seed)} · LR-PSNR {_fmt_db(item.lr_psnr)}"


def _colormap(u: np.ndarray) -> tuple[np.ndarray, float]:
    """float HxW (std in [0, 1] units or 0..255) -> uint8 RGB 'inferno' image, scale max."""
    u = np.nan_to_num(np.asarray(u, dtype=np.float64))
    top = float(np.percentile(u, 99.5)) if u.size else 0.0
    t = np.clip(u / top, 0, 1) if top > 0 else np.zeros_like(u)
    try:
        from matplotlib import colormaps
        rgb = colormaps["inferno"](t)[..., :3]
    except Exception:  # noqa: BLE001 - matplotlib is optional: fall back to gray
        rgb = np.repeat(t[..., None], 3, axis=2)
    return (rgb * 255 + 0.5).astype(np.uint8), top


def _hr_shape(sess) -> tuple[int, int]:
    if sess.current is not None:
        return tuple(sess.current.shape[:2])
    return sess.lr.shape[0] * sess.scale, sess.lr.shape[1] * sess.scale


def _num(v, name: str, lo=None, hi=None, integer=False):
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

    def __init__(self, models: dict, max_side: int = 256, max_upload_bytes: int = MAX_BYTES,
                 history: int = 20, max_history_mb: int = 256):
        if not models:
            raise ValueError("no model given")
        self.models = dict(models)
        self.infos = {name: describe(name, m) for name, m in self.models.items()}
        self.default_model = next(iter(self.models))
        self.max_side = int(max_side)
        self.max_upload_bytes = int(max_upload_bytes)
        # undo history per tab: at most ``history`` steps and ``max_history_mb`` of memory
        self.history_kw = dict(history=int(history), max_history_bytes=int(max_history_mb) * 2**20)
        self.out_dir = Path(tempfile.mkdtemp(prefix="srflow-studio-"))
        atexit.register(shutil.rmtree, self.out_dir, ignore_errors=True)
        self._n_written = 0
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

    def model_choices(self, family: str | None = None, kind: str | None = None) -> list[tuple[str, str]]:
        """(label, name) of the models, optionally only one family/kind."""
        return [(i.label, n) for n, i in self.infos.items()
                if (family is None or i.family == family) and (kind is None or i.kind == kind)]

    def _first(self, family=None, kind=None, scale=None, exclude=()) -> str | None:
        for n, i in self.infos.items():
            if ((family is None or i.family == family) and (kind is None or i.kind == kind)
                    and (scale is None or i.scale == scale) and n not in exclude):
                return n
        return None

    def compare_defaults(self) -> tuple[str | None, str | None]:
        """The Compare tab's preselection: an SRFlow model and an HCFlow SR model of the same
        scale when both exist, else the first two SR models."""
        a = self._first("srflow", "sr") or self._first(kind="sr") or self.default_model
        sc = self.infos[a].scale
        b = (self._first("hcflow", "sr", sc) or self._first("hcflow", None, sc, (a,))
             or self._first(None, None, sc, (a,)))
        return a, b

    def rescale_defaults(self) -> tuple[str | None, str | None]:
        """The Rescale tab's preselection: the first rescaling model and an SRFlow SR model
        of its scale (for the bicubic comparison)."""
        r = self._first(kind="rescaling")
        if r is None:
            return None, self._first("srflow", "sr")
        sc = self.infos[r].scale
        return r, self._first("srflow", "sr", sc) or self._first(None, "sr", sc)

    def _model_note(self, name: str) -> list[str]:
        """What the user should know about editing with this model."""
        i = self.infos[name]
        out = []
        if not i.local_edits:
            out.append(f"{name} is an HCFlow model: brush, take-region, masked normalization and paste "
                       "edits re-decode the whole image (only its finest latent level is local)")
        if i.kind == "rescaling":
            out.append(f"{name} is a rescaling model: it is made to upscale its own LR (Rescale tab); "
                       "on a bicubic LR its samples are only approximate")
        return out

    def _model(self, name):
        if not name:
            name = self.default_model
        if name not in self.models:
            raise ValueError(f"unknown model {name!r}; available: {', '.join(self.models)}")
        return name, self.models[name]

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

    def _fit_hr(self, img: np.ndarray, scale: int, what: str):
        """An HR image: downsize so that its LR fits --max-side; refuse if too small."""
        img, note = fit_max_side(img, self.max_side * scale)
        if min(img.shape[:2]) < MIN_LR_SIDE * scale:
            raise ValueError(f"{what} is {img.shape[1]}×{img.shape[0]}: too small for {scale}× "
                             f"(its LR would be under {MIN_LR_SIDE} pixels; need at least "
                             f"{MIN_LR_SIDE * scale}×{MIN_LR_SIDE * scale})")
        return img, note

    def _make_session(self, model, kind: str, img: np.ndarray):
        S = _session_mod()
        notes = []
        if kind == "hr":
            img, note = self._fit_hr(img, model.scale, "the HR photo")
            sess = S.EditSession.from_hr(model, img, **self.history_kw)
        else:
            img, note = fit_max_side(img, self.max_side)
            sess = S.EditSession(model, img, **self.history_kw)
        if note:
            notes.append(note)
        return sess, notes

    def _f(self, img) -> str | None:
        """An image output as a PNG file in the app's temp dir, named by its content.

        Gradio re-encodes array outputs into its cache on every event, rewriting the
        same file while a browser may be reading it; a path is copied only once.  The
        file is written once (atomically) and shared by every view of the image."""
        if img is None:
            return None
        a = np.ascontiguousarray(img, dtype=np.uint8)
        h = hashlib.sha1(a.tobytes())
        h.update(str(a.shape).encode())
        path = self.out_dir / "img" / f"{h.hexdigest()[:24]}.png"
        if path.exists():
            try:
                os.utime(path)                # still in use: keep it from being pruned
            except OSError:
                pass
        else:
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
            Image.fromarray(a).save(tmp, format="PNG", compress_level=3)
            os.replace(tmp, path)
            self._n_written += 1
            if self._n_written % 200 == 0:
                self._prune(path.parent)
        return str(path)

    @staticmethod
    def _prune(folder: Path, age_s: float = 3 * 3600):
        """Drop app temp files not touched for ``age_s`` (gradio keeps its own copies)."""
        now = time.time()
        for p in folder.glob("*.png"):
            try:
                if now - p.stat().st_mtime > age_s:
                    p.unlink()
            except OSError:
                pass

    def _write(self, name: str) -> Path:
        d = self.out_dir / uuid.uuid4().hex
        d.mkdir(parents=True)
        return d / name

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
            tab.gallery_key = tab.uncertainty_key = tab.uncertainty_img = None
            dt = time.perf_counter() - t0
        lr = sess.lr
        text = (f"loaded {what}: LR {lr.shape[1]}×{lr.shape[0]} → SR {lr.shape[1] * sess.scale}×"
                f"{lr.shape[0] * sess.scale} with {name} ({sess.scale}×)"
                + (" · ground truth available" if sess.hr is not None else "") + f" · {dt:.2f} s"
                + (" — next: Generate (Explore tab)" if sess.current is None else ""))
        text = "\n".join([text] + [f"ℹ {n}" for n in self._model_note(name)]
                          + [f"⚠ {n}" for n in notes + more])
        return tab, self._f(lr), self._f(sess.current), text

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
        i = _num(index, "example index", 0, len(self.examples) - 1, integer=True)
        name, img = self.examples[i]
        kind = "hr" if downscale_first else "lr"
        progress(0.3, desc="Encoding LR")
        return self._load(tab, kind, img.copy(), [], model_name, f"example “{name}”")

    @guarded
    def set_lr_projection(self, tab, alpha):
        a = _num(alpha, "LR projection strength", 0, 1)
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
        t = _num(temperature, "temperature", 0, 1.2)
        s = _num(seed, "seed", 0, 2**63 - 1, integer=True)
        k = _num(n, "number of samples", 1, MAX_SAMPLES, integer=True)
        progress(0.05, desc=f"Sampling {k} image(s) at τ={t:g}")
        with tab.lock:
            res = sess.generate(temperature=t, seed=s, n=k)
        gallery = [(self._f(it.image), _caption(it)) for it in res.extra.get("gallery", sess.gallery)]
        tab.gallery_key = self._gallery_key(sess)
        return tab, gallery, self._f(res.image), _status(res)

    @guarded
    def pick(self, tab, index):
        sess = self._need(tab)
        i = _num(index, "sample index", 0, None, integer=True)
        with tab.lock:
            res = sess.pick(i)
        return tab, self._f(res.image), _status(res)

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
        t = _num(temperature, "region temperature", 0, 1.2)
        s = _num(seed, "region seed", 0, 2**63 - 1, integer=True)
        d = _num(dilation, "dilation", 0, 8, integer=True)
        mask = self.mask_from_editor(editor, _hr_shape(sess))
        progress(0.1, desc="Resampling the region")
        with tab.lock:
            res = sess.resample_region(mask, temperature=t, seed=s, dilation=d)
        return tab, self._f(res.image), _status(res, extra=f"{int(mask.sum())} px brushed"), s + 1

    @guarded
    def take_region(self, tab, editor, index, dilation, progress=gr.Progress()):
        sess = self._need(tab)
        i = _num(index, "sample index", 0, None, integer=True)
        d = _num(dilation, "dilation", 0, 8, integer=True)
        mask = self.mask_from_editor(editor, _hr_shape(sess))
        progress(0.1, desc=f"Taking the region from sample {i}")
        with tab.lock:
            res = sess.take_region_from(i, mask, dilation=d)
        return tab, self._f(res.image), _status(res)

    @guarded
    def normalize(self, tab, mode, temperature, seed, use_mask, editor, progress=gr.Progress()):
        sess = self._need(tab)
        t = _num(temperature, "temperature", 0, 1.2)
        s = _num(seed, "seed", 0, 2**63 - 1, integer=True)
        mask = self.mask_from_editor(editor, _hr_shape(sess)) if use_mask else None
        progress(0.1, desc=f"{mode} latent normalization")
        with tab.lock:
            res = sess.normalize(mode=str(mode), temperature=t, seed=s, mask=mask)
        return tab, self._f(res.image), _status(res)

    # -- transfer / style --------------------------------------------------------
    @guarded
    def transfer(self, tab, source, y0, x0, y1, x1, dst_y, dst_x, dst_h, dst_w, mode, temperature,
                 seed, progress=gr.Progress()):
        sess = self._need(tab)
        src, notes = self._decode(source, "the source image")
        box = tuple(_num(v, n, 0, None, integer=True) for v, n in
                    zip((y0, x0, y1, x1), ("box y0", "box x0", "box y1", "box x1")))
        dyx = (_num(dst_y, "destination y", 0, None, integer=True),
               _num(dst_x, "destination x", 0, None, integer=True))
        h = _num(dst_h, "destination height", 0, None, integer=True)
        w = _num(dst_w, "destination width", 0, None, integer=True)
        if h == 0 and w == 0:                       # 0 × 0: keep the box size
            h, w = box[2] - box[0], box[3] - box[1]
        t = _num(temperature, "temperature", 0, 1.2)
        s = _num(seed, "seed", 0, 2**63 - 1, integer=True)
        progress(0.1, desc="Pasting and harmonizing")
        with tab.lock:
            res = sess.transfer(src, src_box=box, dst_yx=dyx, dst_hw=(h, w), mode=str(mode),
                                temperature=t, seed=s)
        ex = res.extra
        extra = (f"LR-PSNR raw paste {_fmt_db(ex.get('raw_lr_psnr'))} → harmonized "
                 f"{_fmt_db(ex.get('harmonized_lr_psnr'))}")
        return tab, self._f(ex.get("raw")), self._f(res.image), _status(res, notes, extra)

    @guarded
    def style_transfer(self, tab, style, use_mask, editor, progress=gr.Progress()):
        sess = self._need(tab)
        img, notes = self._decode(style, "the style image")
        mask = self.mask_from_editor(editor, _hr_shape(sess)) if use_mask else None
        progress(0.1, desc="Encoding the style image")
        with tab.lock:
            res = sess.style_transfer(img, mask=mask)
        return tab, self._f(res.extra.get("style_hr")), self._f(res.image), _status(res, notes)

    @guarded
    def use_hr(self, tab, progress=gr.Progress()):
        sess = self._need(tab)
        progress(0.1, desc="Encoding the ground truth")
        with tab.lock:
            res = sess.use_hr()
        return tab, self._f(res.image), _status(res)

    @guarded
    def preview_source(self, file):
        if not file:
            return gr.update(value=None, label="Source preview")
        img, notes = self._decode(file, "the source image")
        note = f" — {'; '.join(notes)}" if notes else ""
        return gr.update(value=self._f(img), label=f"Source preview: {img.shape[1]}×{img.shape[0]} "
                                                   f"(x, y from the top left){note}")

    # -- restore -----------------------------------------------------------------
    @guarded
    def restore(self, tab, degraded, temperature, seed, model_name, progress=gr.Progress()):
        img, notes = self._decode(degraded, "the degraded photo")
        t = _num(temperature, "temperature", 0, 1.2)
        s = _num(seed, "seed", 0, 2**63 - 1, integer=True)
        tab = self._tab(tab)
        with tab.lock:
            # an open session keeps its model; otherwise the selected one
            name, model = self._model(tab.model_name if tab.session is not None else model_name)
            img, note = self._fit_hr(img, model.scale, "the degraded photo")
            if note:
                notes.append(note)
            progress(0.1, desc="Restoring")
            if tab.session is None:        # a session on the photo's own LR, without ground truth
                from flow.ops.imresize import make_lr
                sc = model.scale
                crop = img[:img.shape[0] // sc * sc, :img.shape[1] // sc * sc]
                tab.session = _session_mod().EditSession(model, make_lr(crop, sc), **self.history_kw)
                tab.model_name = name
            res = tab.session.restore(img, temperature=t, seed=s)
            tab.origin = ("lr", tab.session.lr)       # a model switch re-encodes the new LR
            tab.gallery_key = None
        inp = res.extra.get("input", img)
        return (tab, (self._f(inp), self._f(res.image)), self._f(res.extra.get("sr_from_lr")),
                _status(res, notes))

    # -- rescale / compare (app/engine.py) -----------------------------------------
    @guarded
    def rescale(self, file, model_name, sr_model_name, progress=gr.Progress()):
        """Rescaling round trip of an HR photo (independent of the tab's editing session)."""
        from app import engine

        r_default, sr_default = self.rescale_defaults()
        name = model_name or r_default
        if name is None:
            raise ValueError("No rescaling model is loaded: start the app with an HCFlow rescaling model "
                             "(assets/hcflow_rescaling_4x.safetensors or --model PATH).")
        name, model = self._model(name)
        if self.infos[name].kind != "rescaling":
            raise ValueError(f"{name} is not a rescaling model; choose one of: "
                             + (", ".join(n for _, n in self.model_choices(kind="rescaling")) or "none loaded"))
        sr_name = sr_model_name or sr_default
        sr_model = None
        if sr_name:
            sr_name, sr_model = self._model(sr_name)
        img, notes = self._decode(file, "the HR photo")
        img, note = self._fit_hr(img, model.scale, "the HR photo")
        if note:
            notes.append(note)
        progress(0.2, desc="Downscaling and upscaling with the flow")
        res = engine.rescale(model, img, sr_model, sr_name)
        notes += res.notes
        lr_path = self._write(f"flow_lr_{res.scale}x.png")
        Image.fromarray(res.flow_lr).save(lr_path, format="PNG")
        m = res.metrics
        H, W = res.hr.shape[:2]
        lines = [f"rescaled a {W}×{H} photo with {name}: flow LR {W // res.scale}×{H // res.scale} (8-bit) → "
                 f"reconstruction at τ = 0 · {res.seconds:.2f} s",
                 f"flow LR vs bicubic LR: PSNR {_fmt_db(m['lr_psnr_flow_vs_bicubic'])}",
                 f"reconstruction vs HR: PSNR {_fmt_db(m['psnr_reconstruction'])} · "
                 f"SSIM {m['ssim_reconstruction']:.4f}",
                 (f"bicubic LR → {sr_name} (τ = 0) vs HR: PSNR {_fmt_db(m['psnr_sr_from_bicubic'])} · "
                  f"SSIM {m['ssim_sr_from_bicubic']:.4f}" if sr_model is not None
                  else "no SR model for the bicubic comparison"),
                 f"bicubic LR → bicubic upscaling vs HR: PSNR {_fmt_db(m['psnr_bicubic_up'])}"]
        lines += [f"⚠ {n}" for n in notes + res.warnings]
        metrics = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()}
        metrics.update(model=name, hr_size=[H, W], notes=notes)
        return (self._f(res.flow_lr), self._f(res.reconstruction),
                self._f(res.sr_from_bicubic) if res.sr_from_bicubic is not None else None,
                str(lr_path), metrics, "\n".join(lines))

    @guarded
    def compare(self, tab, model_a, model_b, temperature, seed, progress=gr.Progress()):
        """One sample of each of two models for the tab's LR, same seed and τ."""
        from app import engine

        sess = self._need(tab)
        t = _num(temperature, "temperature", 0, 1.2)
        sd = _num(seed, "seed", 0, 2**63 - 1, integer=True)
        da, db = self.compare_defaults()
        names = [self._model(model_a or da)[0], self._model(model_b or db)[0]]
        progress(0.1, desc="Sampling with both models")
        with tab.lock:
            lr, hr = sess.lr, sess.hr
        items = engine.compare({n: self.models[n] for n in dict.fromkeys(names)}, lr, hr, t, sd)
        if len(items) == 1:
            items = items * 2
        lines = [f"same LR {lr.shape[1]}×{lr.shape[0]}, seed {sd}, τ = {t:g} (each model draws its own "
                 "latents from the seed)"]
        for it in items[:2] if names[0] != names[1] else items[:1]:
            lines.append(f"{it.info.label}: {_metrics_text(it.metrics)} · {it.seconds:.2f} s")
            lines += [f"⚠ {it.name}: {w}" for w in it.warnings]
        lines[1:1] = [f"A = {items[0].info.label} · B = {items[1].info.label}"]
        return self._f(items[0].image), self._f(items[1].image), "\n".join(lines)

    # -- history / files ------------------------------------------------------------
    @guarded
    def undo(self, tab):
        sess = self._need(tab)
        with tab.lock:
            res = sess.undo()
        if res is None:
            return tab, self._f(sess.current), "nothing to undo"
        return tab, self._f(res.image), _status(res)

    @guarded
    def redo(self, tab):
        sess = self._need(tab)
        with tab.lock:
            res = sess.redo()
        if res is None:
            return tab, self._f(sess.current), "nothing to redo"
        return tab, self._f(res.image), _status(res)

    @guarded
    def download_png(self, tab):
        sess = self._need(tab)
        if sess.current is None:
            raise ValueError("Nothing to download yet: generate a result first.")
        path = self._write(f"srflow_{sess.scale}x.png")
        Image.fromarray(np.asarray(sess.current, dtype=np.uint8)).save(path, format="PNG")
        return str(path)

    @guarded
    def download_session(self, tab):
        sess = self._need(tab)
        path = self._write(f"session{SESSION_SUFFIX}")
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
        S = _session_mod()
        tab = self._tab(tab)
        first, _ = self._model(model_name)
        order = [first] + [n for n in self.models if n != first]
        err = None
        progress(0.2, desc="Reading the session file")
        for name in order:                     # the selected model first, then the others
            try:
                sess = S.EditSession.load(str(file), self.models[name])
                break
            except S.SessionFileError as e:
                err = err or e
        else:
            raise err
        with tab.lock:
            tab.session, tab.model_name = sess, name
            tab.origin = ("hr", sess.hr) if sess.hr is not None else ("lr", sess.lr)
            tab.lr_projection = float(getattr(sess, "lr_projection", 0.0) or 0.0)
            tab.gallery_key = tab.uncertainty_key = tab.uncertainty_img = None
        note = "" if name == first else f" (with model {name}, the one it was made with)"
        return tab, self._f(sess.lr), self._f(sess.current), name, f"session restored{note}: {len(sess.gallery)} " \
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
    @staticmethod
    def _gallery_key(sess):
        return tuple((int(g.seed), float(g.temperature), id(g.image)) for g in sess.gallery)

    def views(self, tab, editor, use_gt):
        """Refresh the secondary views: slider, editor, uncertainty, gallery, buttons."""
        try:
            return self._views(tab, editor, use_gt)
        except Exception:  # noqa: BLE001 - a view refresh must never break the page
            log.exception("view refresh failed")
            return (gr.skip(),) * 8

    def _views(self, tab, editor, use_gt):
        if not isinstance(tab, TabState) or tab.session is None:
            return (gr.skip(),) * 8
        with tab.lock:
            s = tab.session
            cur = s.current
            gt = s.hr is not None
            if cur is None:
                slider = editor_v = None
            else:
                ref = s.hr if (use_gt and gt) else s.bicubic
                slider = gr.update(value=(self._f(ref), self._f(cur)),
                                   label=("ground truth" if use_gt and gt else "bicubic")
                                   + " ⟷ current (drag the handle)")
                layers = []
                if isinstance(editor, dict):
                    for layer in editor.get("layers") or []:
                        if layer is not None and np.asarray(layer).shape[:2] == cur.shape[:2]:
                            layers.append(self._f(np.asarray(layer, dtype=np.uint8)))
                editor_v = {"background": self._f(cur), "layers": layers, "composite": None}
            key = self._gallery_key(s)
            if key != tab.gallery_key:
                gallery = [(self._f(g.image), _caption(g)) for g in s.gallery]
                tab.gallery_key = key
            else:
                gallery = gr.skip()
            if key != tab.uncertainty_key:
                tab.uncertainty_key = key
                tab.uncertainty_img = None
                if len(s.gallery) >= 2:
                    try:
                        u = s.uncertainty()
                        img, top = _colormap(u)
                        tab.uncertainty_img = gr.update(
                            value=self._f(img), label=f"Uncertainty: per-pixel std, {len(s.gallery)} samples "
                                             f"(0 … {top:.0f} of 255)")
                    except ValueError:
                        tab.uncertainty_img = None
            unc = tab.uncertainty_img if tab.uncertainty_img is not None else \
                gr.update(value=None, label="Uncertainty (generate ≥ 2 samples)")
            return (slider, editor_v, unc, gallery, gr.update(interactive=bool(s.can_undo)),
                    gr.update(interactive=bool(s.can_redo)), gr.update(interactive=gt, value=bool(use_gt and gt)),
                    self._f(s.lr))


# ----------------------------------------------------------------------------
# layout
# ----------------------------------------------------------------------------

CSS = """
#status textarea {font-family: ui-monospace, monospace; font-size: 0.9em}
"""

TEMP_INFO = ("τ is the standard-deviation multiplier: latents z ~ N(0, τ²). 0 = deterministic (blurry), "
             "0.8–0.9 = sharp, >1 = artifacts.")


def build_demo(models: dict, max_side: int = 256, queue_size: int = 16, concurrency: int = 1,
               max_upload_bytes: int = MAX_BYTES, history: int = 20, max_history_mb: int = 256,
               delete_cache: tuple[int, int] | None = None) -> gr.Blocks:
    """Build the queued Gradio app around ``models`` ({name: SRFlow}, shared read-only).

    ``max_side``: largest LR side (larger inputs are downsized); ``queue_size`` /
    ``concurrency``: queued / simultaneous requests; ``history`` / ``max_history_mb``:
    undo steps and their memory per browser tab; ``delete_cache``: gradio's
    ``(frequency, age)`` clean-up of the files this app put in its cache, which also
    removes them all at shutdown: only use it with a cache directory of this app's own
    (``GRADIO_TEMP_DIR``, as ``launch.py`` does), never with a shared one."""
    st = Studio(models, max_side=max_side, max_upload_bytes=max_upload_bytes, history=history,
                max_history_mb=max_history_mb)
    img_kw = dict(format="png", interactive=False)

    with gr.Blocks(title="SRFlow Studio", analytics_enabled=False, delete_cache=delete_cache) as demo:
        tab = gr.State(None, time_to_live=6 * 3600)
        gr.Markdown("# SRFlow Studio\nExplorable super-resolution: sample, brush, transfer and restore "
                    "in the latent space of SRFlow and HCFlow models; rescale with HCFlow. Every result stays consistent with the LR input "
                    f"(LR-PSNR). Inputs are limited to {max_side} px on the LR's longest side.")
        with gr.Row():
            status = gr.Textbox(label="Status", lines=3, max_lines=8, interactive=False, elem_id="status",
                                value="Load an image (Input tab) to start.", scale=4)
            with gr.Column(scale=2, min_width=260):
                with gr.Row():
                    undo_btn = gr.Button("↶ Undo", size="sm", interactive=False, elem_id="undo")
                    redo_btn = gr.Button("↷ Redo", size="sm", interactive=False, elem_id="redo")
                with gr.Row():
                    png_btn = gr.Button("Download PNG", size="sm", elem_id="download_png")
                    sess_btn = gr.Button("Download session", size="sm", elem_id="download_session")
                dl_file = gr.File(label="Download", interactive=False, height=60, visible=False, elem_id="dl_file")

        with gr.Tabs():
            # ------------------------------------------------------------ input
            with gr.Tab("1 · Input", id="input"):
                with gr.Row():
                    with gr.Column():
                        upload = gr.File(label="Image (PNG, JPEG, WebP, BMP, GIF, TIFF)", file_types=["image"],
                                         type="filepath", elem_id="upload")
                        downscale = gr.Checkbox(label="Downscale first: the upload is an HR photo; its MATLAB-"
                                                "bicubic downscale becomes the LR and the photo the ground truth",
                                                value=False, elem_id="downscale")
                        model_dd = gr.Dropdown(choices=st.model_choices(), value=st.default_model,
                                               label="Model (family · scale)", elem_id="model",
                                               info="SRFlow and HCFlow models work in every tab; with HCFlow, "
                                                    "region edits re-decode the whole image")
                        load_btn = gr.Button("Load", variant="primary", elem_id="load")
                    with gr.Column():
                        lr_view = gr.Image(label="LR input", height=256, elem_id="lr_view", **img_kw)
                ex_gallery = gr.Gallery(value=[(st._f(img), name) for name, img in st.examples],
                                        label="Examples (public domain / CC0, see assets/examples/LICENSE.md) — "
                                              "click to load", columns=len(st.examples) or 1, height=170,
                                        allow_preview=False, format="png", interactive=False,
                                        elem_id="examples")
                ex_index = gr.Number(value=0, precision=0, visible=False)
                session_up = gr.File(label="Upload a session file (.srflow)", type="filepath", height=110,
                                     elem_id="session_upload")

            # ------------------------------------------------------------ explore
            with gr.Tab("2 · Explore", id="explore"):
                with gr.Row():
                    temp = gr.Slider(0, 1.2, value=0.8, step=0.05, label="Temperature τ", info=TEMP_INFO,
                                     elem_id="temperature")
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="seed")
                        dice = gr.Button("⚄ Random seed", size="sm", min_width=60, elem_id="dice")
                    n_samples = gr.Slider(1, MAX_SAMPLES, value=4, step=1, label="Number of samples",
                                          elem_id="n_samples")
                with gr.Accordion("Exact LR consistency", open=False):
                    proj = gr.Slider(0, 1, value=0, step=0.05, label="LR projection strength α",
                                     info="0 = off. 1 = project every new result exactly onto the images whose "
                                          "bicubic downscale is the LR (Y + α·correction); watch for ringing.",
                                     elem_id="lr_projection")
                gen_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                gr.Markdown("Click a sample to make it the current result.")
                gallery = gr.Gallery(label="Samples", columns=4, height=300,
                                     format="png", allow_preview=False, interactive=False, elem_id="gallery")
                with gr.Row():
                    current = gr.Image(label="Current result", elem_id="current", **img_kw)
                    with gr.Column():
                        slider = gr.ImageSlider(label="bicubic ⟷ current", format="png", interactive=False,
                                                elem_id="compare")
                        use_gt = gr.Checkbox(label="Compare with the ground truth instead of bicubic",
                                             value=False, interactive=False, elem_id="use_gt")
                    uncert = gr.Image(label="Uncertainty (generate ≥ 2 samples)", elem_id="uncertainty",
                                      **img_kw)

            # ------------------------------------------------------------ brush
            with gr.Tab("3 · Brush", id="brush"):
                gr.Markdown("Paint over the region to change, then **Resample region** (each click draws a "
                            "new variant) or **Take region from sample k** (k = position in the gallery, "
                            "0 = first; clicking a gallery sample sets it). With an **HCFlow** model every "
                            "region edit re-decodes the whole image: only its finest latent level is local, "
                            "the coarser latents under the brush also change pixels around it (in principle "
                            "anywhere); SRFlow decodes a window and leaves the rest untouched.", elem_id="brush_info")
                with gr.Row():
                    editor = gr.ImageEditor(type="numpy", image_mode="RGBA", label="Brush",
                                            brush=gr.Brush(default_size=12, colors=[("#ff3b6b", 0.5)],
                                                           color_mode="fixed"),
                                            eraser=gr.Eraser(default_size=12), sources=(), transforms=(),
                                            layers=False, format="png", elem_id="editor", height=520)
                    with gr.Column(scale=0, min_width=260):
                        r_temp = gr.Slider(0, 1.2, value=0.8, step=0.05, label="Region temperature τ",
                                           info=TEMP_INFO, elem_id="region_temperature")
                        r_seed = gr.Number(value=1, precision=0, minimum=0, label="Region seed",
                                           info="increments after each click",
                                           elem_id="region_seed")
                        dilation = gr.Slider(0, 4, value=1, step=1, label="Mask dilation (latent cells)",
                                             elem_id="dilation")
                        resample_btn = gr.Button("Resample region", variant="primary", elem_id="resample")
                        take_k = gr.Number(value=0, precision=0, minimum=0, label="Sample k",
                                           elem_id="take_k")
                        take_btn = gr.Button("Take region from sample k", elem_id="take")
                        with gr.Accordion("Latent normalization", open=False):
                            n_mode = gr.Radio(["local", "spatial", "global"], value="local", label="Mode")
                            n_temp = gr.Slider(0, 1.2, value=0.8, step=0.05, label="Target τ")
                            n_seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                            n_mask = gr.Checkbox(value=False, label="Only where brushed")
                            norm_btn = gr.Button("Normalize", elem_id="normalize")

            # ------------------------------------------------------------ transfer
            with gr.Tab("4 · Transfer & style", id="transfer"):
                with gr.Row():
                    with gr.Column():
                        src_up = gr.File(label="Source image", file_types=["image"], type="filepath",
                                         elem_id="source", height=110)
                        src_view = gr.Image(label="Source preview", height=200, elem_id="source_preview", **img_kw)
                        gr.Markdown("Source box (pixels of the source image) and destination (HR pixels of "
                                    "the current result; size 0 × 0 = box size).")
                        with gr.Row():
                            by0 = gr.Number(value=0, precision=0, label="box y0", minimum=0, min_width=70)
                            bx0 = gr.Number(value=0, precision=0, label="box x0", minimum=0, min_width=70)
                            by1 = gr.Number(value=32, precision=0, label="box y1", minimum=0, min_width=70)
                            bx1 = gr.Number(value=32, precision=0, label="box x1", minimum=0, min_width=70)
                        with gr.Row():
                            dy = gr.Number(value=0, precision=0, label="dest y", minimum=0, min_width=70)
                            dx = gr.Number(value=0, precision=0, label="dest x", minimum=0, min_width=70)
                            dh = gr.Number(value=0, precision=0, label="dest height", minimum=0, min_width=70)
                            dw = gr.Number(value=0, precision=0, label="dest width", minimum=0, min_width=70)
                        t_mode = gr.Radio(["local", "spatial", "global"], value="local",
                                          label="Normalization (local = only the latents under the paste)")
                        with gr.Row():
                            t_temp = gr.Slider(0, 1.2, value=0.8, step=0.05, label="Temperature τ", info=TEMP_INFO)
                            t_seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                        with gr.Row():
                            harm_btn = gr.Button("Harmonize", variant="primary", elem_id="harmonize")
                            use_hr_btn = gr.Button("Target: ground truth", elem_id="use_hr")
                    with gr.Column():
                        with gr.Row():
                            raw_view = gr.Image(label="Raw paste", elem_id="raw_paste", **img_kw)
                            harm_view = gr.Image(label="Harmonized", elem_id="harmonized", **img_kw)
                with gr.Row():
                    with gr.Column():
                        style_up = gr.File(label="Style reference image", file_types=["image"], type="filepath",
                                           elem_id="style", height=110)
                        style_mask = gr.Checkbox(value=False, label="Only where brushed (Brush tab)")
                        style_btn = gr.Button("Style transfer", elem_id="style_transfer")
                    style_view = gr.Image(label="Style image (at the target size)", elem_id="style_hr", **img_kw)

            # ------------------------------------------------------------ restore
            with gr.Tab("5 · Restore", id="restore"):
                with gr.Row():
                    with gr.Column():
                        deg_up = gr.File(label="Degraded HR photo (noise, JPEG artifacts)", file_types=["image"],
                                         type="filepath", elem_id="degraded")
                        with gr.Row():
                            rs_temp = gr.Slider(0, 1.2, value=0.8, step=0.05, label="Temperature τ", info=TEMP_INFO)
                            rs_seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                        restore_btn = gr.Button("Restore", variant="primary", elem_id="restore_btn")
                    restore_view = gr.ImageSlider(label="degraded input ⟷ restored", format="png",
                                                  interactive=False, elem_id="restore_compare")
                    sr_lr_view = gr.Image(label="Plain SR of its LR (for comparison)", **img_kw)

            # ------------------------------------------------------------ rescale
            r_default, r_sr_default = st.rescale_defaults()
            with gr.Tab("6 · Rescale", id="rescale"):
                gr.Markdown("Image **rescaling** with an HCFlow rescaling model: the flow downscales the HR "
                            "photo to its own 8-bit LR and upscales that LR back (τ = 0). PSNRs compare it "
                            "with the bicubic route: the flow LR vs the MATLAB-bicubic LR, the "
                            "reconstruction vs the photo, and the bicubic LR super-resolved by an SR model "
                            "(τ = 0) vs the photo. Sides are cropped to a multiple of the scale."
                            + ("" if r_default else "\n\n**No rescaling model is loaded** (add "
                               "`assets/hcflow_rescaling_4x.safetensors` or pass `--model`)."),
                            elem_id="rescale_info")
                with gr.Row():
                    with gr.Column():
                        rsc_up = gr.File(label="HR photo", file_types=["image"], type="filepath",
                                         elem_id="rescale_upload")
                        rsc_model = gr.Dropdown(choices=st.model_choices(kind="rescaling"), value=r_default,
                                                label="Rescaling model", elem_id="rescale_model")
                        rsc_sr = gr.Dropdown(choices=st.model_choices(kind="sr"), value=r_sr_default,
                                             label="SR model for the bicubic comparison", elem_id="rescale_sr")
                        rsc_btn = gr.Button("Rescale", variant="primary", elem_id="rescale_btn")
                        rsc_file = gr.File(label="Flow LR (PNG)", interactive=False, height=60,
                                           elem_id="rescale_lr_file")
                    with gr.Column():
                        rsc_lr = gr.Image(label="Flow LR (8-bit)", elem_id="rescale_lr", **img_kw)
                        rsc_metrics = gr.JSON(label="Metrics", elem_id="rescale_metrics")
                with gr.Row():
                    rsc_rec = gr.Image(label="Reconstruction (flow LR → flow upscale, τ = 0)",
                                       elem_id="rescale_rec", **img_kw)
                    rsc_srb = gr.Image(label="Bicubic LR → SR model (τ = 0)", elem_id="rescale_sr_img", **img_kw)

            # ------------------------------------------------------------ compare
            c_a, c_b = st.compare_defaults()
            with gr.Tab("7 · Compare", id="compare_tab"):
                gr.Markdown("Side by side: one sample of each model for the loaded LR, with the same seed "
                            "and temperature (each model draws its own latents from the seed).")
                with gr.Row():
                    cmp_a = gr.Dropdown(choices=st.model_choices(), value=c_a, label="Model A", elem_id="compare_a")
                    cmp_b = gr.Dropdown(choices=st.model_choices(), value=c_b, label="Model B", elem_id="compare_b")
                    cmp_temp = gr.Slider(0, 1.2, value=0.8, step=0.05, label="Temperature τ", info=TEMP_INFO,
                                         elem_id="compare_temperature")
                    cmp_seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="compare_seed")
                cmp_btn = gr.Button("Compare", variant="primary", elem_id="compare_btn")
                with gr.Row():
                    cmp_img_a = gr.Image(label="A", elem_id="compare_img_a", **img_kw)
                    cmp_img_b = gr.Image(label="B", elem_id="compare_img_b", **img_kw)
                cmp_status = gr.Textbox(label="Comparison", lines=3, interactive=False, elem_id="compare_status")

        # ------------------------------------------------------------ events
        view_out = [slider, editor, uncert, gallery, undo_btn, redo_btn, use_gt, lr_view]

        def then_views(dep):
            return dep.success(st.views, [tab, editor, use_gt], view_out, api_visibility="private",
                               queue=False, show_progress="hidden")

        loaded = [tab, lr_view, current, status]
        then_views(load_btn.click(st.load_image, [tab, upload, downscale, model_dd], loaded,
                                  api_name="load_image"))
        then_views(ex_gallery.select(st.select_sample, None, ex_index, api_visibility="private",
                                     queue=False)
                   .success(st.load_example, [tab, ex_index, downscale, model_dd], loaded,
                            api_name="load_example"))
        then_views(model_dd.input(st.set_model, [tab, model_dd], loaded, api_name="set_model"))

        dice.click(None, None, seed, js="() => Math.floor(Math.random() * 2147483647)",
                   api_visibility="private")
        then_views(gen_btn.click(st.generate, [tab, temp, seed, n_samples], [tab, gallery, current, status],
                                 api_name="generate"))
        proj.release(st.set_lr_projection, [tab, proj], [tab, status], api_name="set_lr_projection")
        then_views(gallery.select(st.select_sample, None, take_k, api_visibility="private", queue=False)
                   .success(st.pick, [tab, take_k], [tab, current, status], api_name="pick"))
        use_gt.input(st.views, [tab, editor, use_gt], view_out, api_visibility="private", queue=False,
                     show_progress="hidden")

        then_views(resample_btn.click(st.resample_region, [tab, editor, r_temp, r_seed, dilation],
                                      [tab, current, status, r_seed], api_name="resample_region"))
        then_views(take_btn.click(st.take_region, [tab, editor, take_k, dilation], [tab, current, status],
                                  api_name="take_region"))
        then_views(norm_btn.click(st.normalize, [tab, n_mode, n_temp, n_seed, n_mask, editor],
                                  [tab, current, status], api_name="normalize"))

        then_views(harm_btn.click(st.transfer, [tab, src_up, by0, bx0, by1, bx1, dy, dx, dh, dw, t_mode,
                                                t_temp, t_seed],
                                  [tab, raw_view, harm_view, status], api_name="transfer"))
        then_views(use_hr_btn.click(st.use_hr, [tab], [tab, current, status], api_name="use_hr"))
        src_up.change(st.preview_source, [src_up], [src_view], api_visibility="private", show_progress="hidden")
        then_views(style_btn.click(st.style_transfer, [tab, style_up, style_mask, editor],
                                   [tab, style_view, current, status], api_name="style_transfer"))
        then_views(restore_btn.click(st.restore, [tab, deg_up, rs_temp, rs_seed, model_dd],
                                     [tab, restore_view, sr_lr_view, status], api_name="restore"))

        rsc_btn.click(st.rescale, [rsc_up, rsc_model, rsc_sr],
                      [rsc_lr, rsc_rec, rsc_srb, rsc_file, rsc_metrics, status], api_name="rescale")
        cmp_btn.click(st.compare, [tab, cmp_a, cmp_b, cmp_temp, cmp_seed], [cmp_img_a, cmp_img_b, cmp_status],
                      api_name="compare")

        then_views(undo_btn.click(st.undo, [tab], [tab, current, status], api_name="undo"))
        then_views(redo_btn.click(st.redo, [tab], [tab, current, status], api_name="redo"))
        for btn, fn, name in ((png_btn, st.download_png, "download_png"),
                              (sess_btn, st.download_session, "download_session")):
            btn.click(lambda: gr.update(visible=True), None, dl_file, api_visibility="private", queue=False,
                      show_progress="hidden").then(fn, [tab], dl_file, api_name=name)
        then_views(session_up.upload(st.upload_session, [tab, session_up, model_dd],
                                     [tab, lr_view, current, model_dd, status], api_name="upload_session"))
        info_json = gr.JSON(visible=False, label="info")
        info_btn = gr.Button(visible=False)
        info_btn.click(st.info, [tab], info_json, api_name="info", queue=False)

    demo.queue(default_concurrency_limit=int(concurrency), max_size=int(queue_size))
    demo.studio = st
    return demo
