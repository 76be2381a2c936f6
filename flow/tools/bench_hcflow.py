"""Bench section: HCFlow sampling and rescaling (a section of ``python -m flow.bench``).

``run(args) -> list[dict]``.  For the official HCFlow SR 4x and rescaling 4x
architectures (random-but-mild weights: the official checkpoints cannot be downloaded
here) and the shipped ``assets/hcflow_*_4x.safetensors`` when present, on a 64x64 LR
(the held-out *astronaut* photo):

* ``first sample``: top-level features ``c_{L-1}`` + the full top-down decode;
* ``further sample``: with ``c_{L-1}`` cached in the :class:`Condition` (the only part
  of HCFlow's conditioning that depends on the LR alone; the finer extractors see the
  coarser latents and must run for every sample), ``ratio`` = first / further;
* ``rescale round trip``: flow downscale + 8-bit quantisation + upscale at tau 0 of the
  256x256 HR;
* ``peak MB``: peak resident memory growth of that step (Linux ``VmHWM``, reset first).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _models(kind: str):
    from ..models.checkpoint import load_model
    from ..models.randomize import randomize
    from ..models.registry import build, preset

    official = "hcflow_sr_df2k_4x" if kind == "sr" else "hcflow_rescaling_df2k_4x"
    torch.manual_seed(0)
    out = [(official, "random weights", randomize(build(preset(official)), weight_std=1e-3, scale=0.5).eval())]
    shipped = ROOT / "assets" / f"hcflow_{kind}_4x.safetensors"
    if shipped.is_file():
        out.append((shipped.stem, "shipped weights", load_model(shipped, device="cpu")))
    return out


def _timed(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _peak(fn):
    from .bench import reset_peak_rss, status_kb

    reset = reset_peak_rss()
    base = status_kb("VmRSS")
    fn()
    return (status_kb("VmHWM") - base) / 1024 if reset else None


def run(args) -> list[dict]:
    from .bench import bench_lr

    repeats = max(1, args.repeats or (2 if args.quick else 3))
    lr = bench_lr(64)
    rows = []
    sr_models, rs_models = _models("sr"), _models("rescaling")
    with torch.inference_mode():
        for name, desc, m in sr_models:
            first = _timed(lambda: m.sample(lr, 0.8, seed=0), repeats)
            cond = m.encode_condition(lr)
            further = _timed(lambda: m.sample(cond, 0.8, seed=1), repeats)
            peak = _peak(lambda: m.sample(lr, 0.8, seed=0))
            rows.append({"name": f"hcflow {name} 64² LR: first sample", "median_s": first, "peak_rss_mb": peak,
                         "note": desc})
            rows.append({"name": f"hcflow {name} 64² LR: further sample (cached c_top)", "median_s": further,
                         "ratio": first / further, "note": "ratio = first / further"})
        hr = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic").clamp(0, 1)
        for name, desc, m in rs_models:
            t = _timed(lambda: m.rescale_roundtrip(hr), repeats)
            peak = _peak(lambda: m.rescale_roundtrip(hr))
            rows.append({"name": f"hcflow {name} 256² HR: rescale round trip", "median_s": t,
                         "peak_rss_mb": peak, "note": desc})
    return rows
