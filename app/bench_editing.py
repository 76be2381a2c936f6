"""Benchmark section ``editing``: latency of interactive latent edits in the app's
editing session.  ``python -m app.bench_editing [--quick] [--repeats N] [--threads N]``
(the runner of :mod:`flow.tools.bench`, with this section; its other sections can be
added with ``--sections``).

``run(args) -> list[dict]`` with rows ``{'name', 'median_s', 'ratio'?, 'note'?}``;
``args`` needs ``.quick`` (fewer repeats, the DF2K model only once) and ``.repeats``.

For each model -- the shipped ``studio_4x`` (``assets/studio_4x.safetensors``, or
random weights of that architecture when the file does not exist) and the official
DF2K 4x architecture ``srflow_df2k_4x`` (random weights, :mod:`flow.models.randomize`;
the official checkpoint cannot be downloaded here) -- on a 128x128 LR image (the
held-out ``astronaut`` photo, 512x512 HR) it measures:

* ``recompute everything``: encoder + latent draw + full decode (what an edit
  would cost without the session's cache and windowed decoding);
* ``region resample``: :meth:`app.session.EditSession.resample_region` of a 64x64 HR
  brush square (dilation 1), encoder cached, windowed decode;
* ``harmonize``: :meth:`EditSession.transfer` of a 64x64 paste, local normalization;
* ``shortcut error``: max |windowed splice - full decode| of the region resample,
  in 1/255 units (float images, before quantization).

``ratio`` is ``recompute everything / edit``.  Measured figures: README (Benchmarks)
and ``docs/MEASUREMENTS.md``.

Section ``style`` (``python -m app.bench_editing --sections style --threads 2``): style
transfer (SRFlow §4.2) at 128² LR (the ``chelsea`` photo, 512x512 HR; styles ``coffee``
and ``astronaut``) for ``studio_4x`` and ``hcflow_sr_4x`` (the shipped files; skipped
when missing), the old method (the style image encoded at the target size with its
own LR, its latents decoded with the target's LR: :func:`old_style_transfer`) against
the session's :meth:`EditSession.style_transfer` (latent statistics of the style
encoded at 64² LR, cached), timed in the same run: median of ``max(5, repeats)`` warm
calls each (the new one's first, uncached call is reported too).  Per result: the
non-finite pixels of the unguarded decode, the LR-PSNR, and the statistics of
:func:`style_measures` (colour and detail distance to the style image, and the
*ghost* correlation of the result's detail with the style image's edges), before
(the content sample) and after.  It writes ``docs/figures/style_transfer.png``
(content | style | old | new, ``studio_4x``, style ``coffee``; top: whole images at half size,
bottom: a centre crop at 2x zoom).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
STUDIO_ASSET = ROOT / "assets" / "studio_4x.safetensors"


def load_bench_model(name: str):
    """(model, description) for 'studio_4x' or 'srflow_df2k_4x'."""
    from flow.models.checkpoint import load_model, model_identity
    from flow.models.randomize import randomize
    from flow.models.registry import build, preset

    if name == "studio_4x" and STUDIO_ASSET.is_file():
        return load_model(STUDIO_ASSET, device="cpu"), "trained assets/studio_4x.safetensors"
    torch.manual_seed(0)
    m = randomize(build(preset(name)), expand=0.22).eval()     # decodes stay within a few units
    m.identity = model_identity(m)
    return m, "random weights"


def _median(fn, repeats: int, setup=None) -> tuple[float, list]:
    times, outs = [], []
    for k in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        outs.append(fn(k))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), outs


def bench_model(name: str, repeats: int, lr_side: int = 128, full_repeats: int | None = None) -> list[dict]:
    from app.session import EditSession
    from flow.ops.images import to_tensor
    from flow.ops.imresize import make_lr
    from flow.tools.data import heldout_images

    model, desc = load_bench_model(name)
    hr = heldout_images(("astronaut",), crop=lr_side * 4)["astronaut"]
    src = heldout_images(("coffee",), crop=256)["coffee"]
    lr = make_lr(hr, 4)
    lr_t = to_tensor(lr)[None]
    tag = f"edit {name} {lr_side}² LR"
    rows = []

    def full(k):
        with torch.no_grad():
            cond = model.encode_condition(lr_t, cache=True)
            return model.decode(cond, model.draw_latents(cond, 0.8, k))

    t_full, _ = _median(full, full_repeats or repeats)
    rows.append({"name": f"{tag}: recompute everything (encoder + full decode)", "median_s": t_full,
                 "note": desc})
    t0 = time.perf_counter()
    s = EditSession.from_hr(model, hr)
    t_enc = time.perf_counter() - t0
    rows.append({"name": f"{tag}: session start (encoder once)", "median_s": t_enc, "ratio": t_full / t_enc})
    r = s.generate(0.8, 0, 1)
    rows.append({"name": f"{tag}: sample with cached encoder (full decode)", "median_s": r.seconds,
                 "ratio": t_full / r.seconds})
    H = lr_side * 4
    mask = np.zeros((H, H), bool)
    mask[H // 2 - 32:H // 2 + 32, H // 2 - 32:H // 2 + 32] = True

    def back():
        if s.can_undo:
            s.undo()

    def resample(k):
        return s.resample_region(mask, 0.8, seed=100 + k, dilation=1)

    t_res, outs = _median(resample, repeats, back)
    rows.append({"name": f"{tag}: region resample 64x64 mask", "median_s": t_res, "ratio": t_full / t_res,
                 "note": outs[-1].changed})
    # the shortcut's error vs a full decode of the same latents
    with torch.no_grad():
        truth = model.decode(s.cond, s.latents)[0].permute(1, 2, 0).numpy()
    err = float(np.abs(s._raw - truth).max()) * 255
    rows[-1]["note"] += f"; max error vs full decode {err:.4f}/255"
    if r.warnings or outs[-1].warnings:
        rows[-1]["note"] += f"; guard: {(r.warnings + outs[-1].warnings)[0]}"

    def harmonize(k):
        return s.transfer(src, (64, 64, 128, 128), (H // 2 - 32, H // 2 - 32), (64, 64), mode="local",
                          temperature=0.8, seed=k)

    t_har, outs = _median(harmonize, repeats, back)
    o = outs[-1]
    rows.append({"name": f"{tag}: paste + harmonize 64x64", "median_s": t_har, "ratio": t_full / t_har,
                 "note": f"LR-PSNR raw {o.extra['raw_lr_psnr']:.2f} -> harmonized {o.extra['harmonized_lr_psnr']:.2f} dB"})
    return rows


# ----------------------------------------------------------------------------
# style transfer
# ----------------------------------------------------------------------------

STYLE_MODELS = ("studio_4x", "hcflow_sr_4x")
FIGURE = ROOT / "docs" / "figures" / "style_transfer.png"


def old_style_transfer(session, style: np.ndarray):
    """The pre-#17 style transfer, for comparison: the style image fitted to the HR
    size, encoded with its own LR (encoder + full flow encode), its latents decoded
    with the session's LR (guarded).  Returns ``(uint8 image, latents)``."""
    from flow import editing as E
    from flow.ops.images import to_tensor, to_uint8
    from flow.ops.imresize import make_lr

    H, W = session.hr_size
    style_hr = E.fit_image(style, H, W)
    with torch.no_grad():
        z = E.style_latents(session.model, to_tensor(style_hr)[None], to_tensor(make_lr(style_hr, session.scale))[None])
        imgs, lat, _ = session.renderer.full(z)
    return to_uint8(imgs[0]), z


def _detail(img: np.ndarray) -> np.ndarray:
    """The detail layer of a uint8 image: itself minus the bicubic up-scaling of its
    MATLAB 1/4 downscale (what the flow adds above the LR), float (H, W, 3)."""
    from flow.ops.imresize import imresize

    x = img.astype(np.float64) / 255.0
    return x - imresize(imresize(x, 0.25), output_shape=x.shape[:2])


def style_measures(result: np.ndarray, style_hr: np.ndarray) -> dict:
    """How close ``result`` is to the style image ``style_hr`` (same size):

    * ``colour``: L1 distance of the per-channel RGB mean and std (0..1 units, 6 numbers summed);
    * ``detail``: L1 distance of the per-channel std of the detail layers (:func:`_detail`,
      the high-frequency energy), x100;
    * ``ghost``: the correlation of the two detail layers' gradient magnitudes (the
      style image's edges reappearing in the result; ~0 when none are carried over)."""
    a, b = result.astype(np.float64) / 255.0, style_hr.astype(np.float64) / 255.0
    colour = float(np.abs(a.mean((0, 1)) - b.mean((0, 1))).sum() + np.abs(a.std((0, 1)) - b.std((0, 1))).sum())
    da, db = _detail(result), _detail(style_hr)
    detail = float(np.abs(da.std((0, 1)) - db.std((0, 1))).sum()) * 100

    def grad(d):
        g = d.mean(axis=2)
        return np.hypot(np.diff(g, axis=0)[:, :-1], np.diff(g, axis=1)[:-1])

    ga, gb = grad(da).ravel(), grad(db).ravel()
    ghost = float(np.corrcoef(ga, gb)[0, 1])
    return {"colour": colour, "detail": detail, "ghost": ghost}


def _nonfinite(session, lat) -> int:
    from flow import editing as E

    with torch.no_grad():
        return int(E.bad_pixels(session.model.decode(session.cond, lat)).sum())


def bench_style(name: str, repeats: int, lr_side: int = 128, figure: bool = False) -> list[dict]:
    from app.session import EditSession
    from flow import editing as E
    from flow.models.checkpoint import load_model
    from flow.tools.data import heldout_images

    path = ROOT / "assets" / f"{name}.safetensors"
    tag = f"style {name} {lr_side}² LR"
    if not path.is_file():
        return [{"name": f"{tag}: skipped", "note": f"{path.name} not found"}]
    model = load_model(path, device="cpu")
    H = lr_side * 4
    photos = heldout_images(("chelsea", "coffee", "astronaut"), crop=None)
    content = E.fit_image(photos["chelsea"], H, H)
    s = EditSession.from_hr(model, content)
    s.generate(0.8, 0, 1)
    base_img, base_lat = s.current, s.latents
    rows = []
    for style_name in ("coffee", "astronaut"):
        style = photos[style_name]
        style_hr = E.fit_image(style, H, H)

        def back():
            while s.can_undo and s.latents is not base_lat:
                s.undo()

        t_old, outs_old = _median(lambda k: old_style_transfer(s, style), repeats)
        old_img, old_lat = outs_old[-1]
        back()
        t0 = time.perf_counter()
        first = s.style_transfer(style)
        t_first = time.perf_counter() - t0
        back()
        t_new, outs_new = _median(lambda k: s.style_transfer(style), repeats, back)
        new = outs_new[-1]
        assert new.extra["style_cache_hit"] and not first.extra["style_cache_hit"]
        m0, m_old, m_new = (style_measures(x, style_hr) for x in (base_img, old_img, new.image))
        from flow.ops.metrics import lr_psnr

        lp_old = lr_psnr(old_img, s.lr, 4)
        nf_old, nf_new = _nonfinite(s, old_lat), _nonfinite(s, s.latents)
        rows.append({"name": f"{tag}, style {style_name}: old (style encoded at the target size)",
                     "median_s": t_old, "note": f"non-finite {nf_old}; LR-PSNR {lp_old:.2f} dB; "
                     + "colour/detail/ghost {colour:.3f}/{detail:.2f}/{ghost:.2f}".format(**m_old)})
        rows.append({"name": f"{tag}, style {style_name}: new, first call (style statistics at 64² LR)",
                     "median_s": t_first, "ratio": t_old / t_first})
        rows.append({"name": f"{tag}, style {style_name}: new, repeat (cached statistics)", "median_s": t_new,
                     "ratio": t_old / t_new,
                     "note": f"non-finite {nf_new}; guard warnings {len(new.warnings)}; LR-PSNR "
                             f"{new.metrics['lr_psnr']:.2f} dB; colour/detail/ghost "
                             + "{colour:.3f}/{detail:.2f}/{ghost:.2f}".format(**m_new)
                             + " (content sample: {colour:.3f}/{detail:.2f}/{ghost:.2f})".format(**m0)})
        if figure and style_name == "coffee":
            _style_figure([base_img, style_hr, old_img, new.image], ["content (sample, before)", f"style ({style_name})",
                                                                    "old: style latents", "new: style statistics"])
        back()
    return rows


def _style_figure(images, labels):
    from PIL import Image, ImageDraw

    H, W = images[0].shape[:2]
    h, w = H // 2, W // 2
    small = [np.asarray(Image.fromarray(im).resize((w, h), Image.BICUBIC)) for im in images]   # the whole image
    crop = [im[H // 4:H // 4 + h // 2, W // 4:W // 4 + w // 2] for im in images]               # 2x zoom, native detail
    crop = [np.asarray(Image.fromarray(c).resize((w, h), Image.NEAREST)) for c in crop]
    top = np.concatenate(small, axis=1)
    bottom = np.concatenate(crop, axis=1)
    canvas = Image.fromarray(np.concatenate([top, bottom], axis=0))
    d = ImageDraw.Draw(canvas)
    for k, lab in enumerate(labels):
        d.rectangle([k * w, 0, k * w + 8 * len(lab) + 6, 16], fill=(0, 0, 0))
        d.text((k * w + 3, 2), lab, fill=(255, 255, 255))
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(FIGURE)


def run_style(args) -> list[dict]:
    repeats = max(5, int(getattr(args, "repeats", 5) or 5))
    if getattr(args, "quick", False):
        repeats = 2
    rows = []
    for k, name in enumerate(STYLE_MODELS):
        rows += bench_style(name, repeats, figure=(k == 0))
    return rows


def run(args) -> list[dict]:
    quick = bool(getattr(args, "quick", False))
    repeats = max(1, int(getattr(args, "repeats", 3) or 3))
    rows = bench_model("studio_4x", 2 if quick else repeats)
    rows += bench_model("srflow_df2k_4x", 1 if quick else min(repeats, 3), full_repeats=1)
    return rows


if __name__ == "__main__":
    import sys

    from flow.tools import bench

    sys.exit(bench.main(extra={"editing": run, "style": run_style}, prog="python -m app.bench_editing", default=["editing"]))
