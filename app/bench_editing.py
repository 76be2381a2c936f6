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


def run(args) -> list[dict]:
    quick = bool(getattr(args, "quick", False))
    repeats = max(1, int(getattr(args, "repeats", 3) or 3))
    rows = bench_model("studio_4x", 2 if quick else repeats)
    rows += bench_model("srflow_df2k_4x", 1 if quick else min(repeats, 3), full_repeats=1)
    return rows


if __name__ == "__main__":
    import sys

    from flow.tools import bench

    sys.exit(bench.main(extra={"editing": run}, prog="python -m app.bench_editing", default=["editing"]))
