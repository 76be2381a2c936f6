"""What the app shows: status lines and captions, the views refreshed from the session
after every action (:data:`VIEW_NAMES`: the current result, comparison slider, brush
editor, uncertainty map, gallery, undo/redo buttons, LR view and the previews of the
action that made the current image), and image outputs as PNG files.

Image outputs go through :class:`ImageFiles`: Gradio re-encodes array outputs into its
cache on every event, rewriting the same file while a browser may be reading it; a path
is copied only once.  So every output image is written once (atomically) to the app's
private temp directory, named by its content, and shared by every view of it; files
not touched for a while are pruned.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import time
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from flow.ops.images import to_uint8

log = logging.getLogger("srflow.ui")


# ----------------------------------------------------------------------------
# image files
# ----------------------------------------------------------------------------

class ImageFiles:
    """Output images as PNG files under ``out_dir`` (see the module docstring)."""

    #: every this many new files, old ones are pruned
    PRUNE_EVERY = 200
    #: files not touched for this long are pruned (gradio keeps its own copies)
    MAX_AGE_S = 3 * 3600

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.written = 0

    def png(self, img) -> str | None:
        """The path of ``img`` (uint8 HxWx3) as a PNG, written once per content."""
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
            self.written += 1
            if self.written % self.PRUNE_EVERY == 0:
                self.prune(path.parent)
        return str(path)

    @classmethod
    def prune(cls, folder: Path, age_s: float | None = None) -> None:
        """Drop the PNGs of ``folder`` not touched for ``age_s`` (default :data:`MAX_AGE_S`)."""
        age_s = cls.MAX_AGE_S if age_s is None else age_s
        now = time.time()
        for p in Path(folder).glob("*.png"):
            try:
                if now - p.stat().st_mtime > age_s:
                    p.unlink()
            except OSError:
                pass

    def new_path(self, name: str) -> Path:
        """A fresh path ``<out_dir>/<unique>/name`` for a download."""
        d = self.out_dir / uuid.uuid4().hex
        d.mkdir(parents=True)
        return d / name


# ----------------------------------------------------------------------------
# text
# ----------------------------------------------------------------------------

def fmt_db(v) -> str:
    if v is None:
        return "n/a"
    v = float(v)
    if math.isinf(v):
        return "∞ dB"
    if math.isnan(v):
        return "n/a"
    return f"{v:.2f} dB"


def metrics_text(m: dict) -> str:
    parts = []
    if m.get("lr_psnr") is not None:
        parts.append(f"LR-PSNR {fmt_db(m['lr_psnr'])}"
                     + (f" (without the LR projection {fmt_db(m['lr_psnr_raw'])})"
                        if m.get("lr_psnr_raw") is not None else ""))
    if m.get("psnr") is not None:
        parts.append(f"PSNR {fmt_db(m['psnr'])}")
    if m.get("ssim") is not None:
        parts.append(f"SSIM {float(m['ssim']):.4f}")
    return " · ".join(parts)


def status_text(res, notes=(), extra: str = "") -> str:
    """The status line of an operation's result: what changed, time, metrics, then its
    notes (ℹ) and warnings (⚠; numerical guard actions also pop up as toasts)."""
    head = [str(res.changed), f"{float(res.seconds):.2f} s"]
    mt = metrics_text(res.metrics or {})
    if mt:
        head.append(mt)
    if extra:
        head.append(extra)
    lines = [" · ".join(head)]
    lines += [f"ℹ {n}" for n in getattr(res, "notes", None) or []]
    lines += [f"⚠ {w}" for w in list(notes) + list(res.warnings or [])]
    for w in res.warnings or []:
        gr.Warning(str(w))
    return "\n".join(lines)


def caption(item) -> str:
    return f"seed {int(item.seed)} · LR-PSNR {fmt_db(item.lr_psnr)}"


def colormap(u: np.ndarray) -> tuple[np.ndarray, float]:
    """float HxW (std in [0, 1] units or 0..255) -> uint8 RGB 'inferno' image, scale max."""
    u = np.nan_to_num(np.asarray(u, dtype=np.float64))
    top = float(np.percentile(u, 99.5)) if u.size else 0.0
    t = np.clip(u / top, 0, 1) if top > 0 else np.zeros_like(u)
    try:
        from matplotlib import colormaps
        rgb = colormaps["inferno"](t)[..., :3]
    except Exception:  # noqa: BLE001 - matplotlib is optional: fall back to gray
        rgb = np.repeat(t[..., None], 3, axis=2)
    return to_uint8(rgb), top


def hr_shape(sess) -> tuple[int, int]:
    if sess.current is not None:
        return tuple(sess.current.shape[:2])
    return sess.lr.shape[0] * sess.scale, sess.lr.shape[1] * sess.scale


# ----------------------------------------------------------------------------
# the views of the session
# ----------------------------------------------------------------------------

def gallery_key(sess):
    """What identifies the gallery a view shows (its items' seeds, temperatures, images)."""
    return tuple((int(g.seed), float(g.temperature), id(g.image)) for g in sess.gallery)


#: the views every action refreshes from the session, in this order (the outputs of
#: :meth:`Views.refresh`; ``app.ui.layout`` maps each name to its component).  One list,
#: so that no action can forget one: the current result, the comparison slider, the brush
#: editor, the uncertainty map, the gallery, undo / redo, the ground-truth checkbox, the LR
#: view, the previews of the actions that made the current image (raw paste / harmonized,
#: style image, restore pair and plain SR), and ``shown``: a hidden text, ``"<refresh
#: count> <file name of the current image>"``, that the browser test waits on.
VIEW_NAMES = ("current", "slider", "editor", "uncert", "gallery", "undo_btn", "redo_btn", "use_gt",
              "lr_view", "raw_view", "harm_view", "style_view", "restore_view", "sr_lr_view", "shown")
N_VIEWS = len(VIEW_NAMES)
#: the previews shown only while the image their action made is the session's current one
PREVIEWS = ("raw_view", "harm_view", "style_view", "restore_view", "sr_lr_view")


class Previews:
    """What an action showed besides its result (e.g. the raw paste of a harmonize), valid
    while ``image``, the result it made, is the session's current image (undo / redo bring
    back the same array, so a redo shows them again)."""

    def __init__(self, image, **views):
        unknown = set(views) - set(PREVIEWS)
        if unknown:
            raise ValueError(f"not previews: {sorted(unknown)}")
        self.image = image
        self.views = views


class Views:
    """Every view of a tab, refreshed from its session after every action; the gallery and
    the uncertainty map are re-sent only when the gallery changed."""

    def __init__(self, files: ImageFiles):
        self.files = files

    def refresh(self, tab, editor, use_gt):
        """The values of :data:`VIEW_NAMES` for the tab's session; ``gr.skip()`` for each
        without one.  A failing refresh is logged and skipped: it must never break the page."""
        try:
            return self._refresh(tab, editor, use_gt)
        except Exception:  # noqa: BLE001
            log.exception("view refresh failed")
            return (gr.skip(),) * N_VIEWS

    def _refresh(self, tab, editor, use_gt):
        if tab is None or getattr(tab, "session", None) is None:
            return (gr.skip(),) * N_VIEWS
        f = self.files.png
        with tab.lock:
            s = tab.session
            cur = s.current
            gt = s.hr is not None
            cur_path = f(cur)
            if cur is None:
                slider = editor_v = None
            else:
                ref = s.hr if (use_gt and gt) else s.bicubic
                slider = gr.update(value=(f(ref), cur_path),
                                   label=("ground truth" if use_gt and gt else "bicubic")
                                   + " ⟷ current (drag the handle)")
                layers = []
                if isinstance(editor, dict):
                    for layer in editor.get("layers") or []:
                        if layer is not None and np.asarray(layer).shape[:2] == cur.shape[:2]:
                            layers.append(f(np.asarray(layer, dtype=np.uint8)))
                editor_v = {"background": cur_path, "layers": layers, "composite": None}
            key = gallery_key(s)
            if key != tab.gallery_key:
                gallery = [(f(g.image), caption(g)) for g in s.gallery]
                tab.gallery_key = key
            else:
                gallery = gr.skip()
            if key != tab.uncertainty_key:
                tab.uncertainty_key = key
                tab.uncertainty_img = None
                if len(s.gallery) >= 2:
                    try:
                        img, top = colormap(s.uncertainty())
                        tab.uncertainty_img = gr.update(
                            value=f(img), label=f"Uncertainty: per-pixel std, {len(s.gallery)} samples "
                                                f"(0 … {top:.0f} of 255)")
                    except ValueError:
                        tab.uncertainty_img = None
            unc = tab.uncertainty_img if tab.uncertainty_img is not None else \
                gr.update(value=None, label="Uncertainty (generate ≥ 2 samples)")
            pv = getattr(tab, "previews", None)
            live = pv.views if pv is not None and cur is not None and pv.image is cur else {}
            previews = tuple(live.get(n) for n in PREVIEWS)
            tab.refreshes = getattr(tab, "refreshes", 0) + 1   # the page's ``shown`` counter
            shown = f"{tab.refreshes} {os.path.basename(cur_path) if cur_path else ''}".strip()
            return (cur_path, slider, editor_v, unc, gallery, gr.update(interactive=bool(s.can_undo)),
                    gr.update(interactive=bool(s.can_redo)), gr.update(interactive=gt, value=bool(use_gt and gt)),
                    f(s.lr)) + previews + (shown,)
