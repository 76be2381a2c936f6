"""NTIRE-compatible evaluation: temperature sweeps of a model, or scoring of any
method's SR images, with per-image CSVs, summary JSONs and plots.

Usage::

    # sweep a model (LR made from the GT by MATLAB bicubic, GT cropped to multiples of 8)
    python -m flow.evaluate --model assets/studio_4x.safetensors --gt-dir GT/ --out eval/ \\
        [--lr-dir LR/] [--temperatures 0,0.5,0.8,0.9,1.0] [--samples 10] [--seed 0] \\
        [--shave S] [--tile 0] [--no-nll] [--device auto]
    # official .pth:  --model SRFlow_DF2K_4X.pth --config srflow_df2k_4x (preset or YAML)
    # score existing outputs of any method (NTIRE layout, no model):
    python -m flow.evaluate --sr-dir SR/ --gt-dir GT/ --scale 4 --out eval/ [--lr-dir LR/]

Inputs.  GT images are the image files of ``--gt-dir`` sorted by name; image ``i`` is
the ``i``-th (0-based).  Each GT is cropped to multiples of 8 (NTIRE).  Given LR images
(``--lr-dir``) are paired with the GT by name (same stem, or the DIV2K form
``<stem>x<scale>``); ``LR x scale`` must equal the cropped GT size (or the uncropped
GT size, in which case the SR is cropped to the GT like NTIRE does).  Mismatched
names, counts or sizes, empty folders and unreadable images stop with an error.

Output layout (model mode)::

    OUT/t0.8/000000_sample00000.png ...      NTIRE layout (000000.png with --samples 1):
                                             the official measure.py runs on this folder,
                                             and so does ``--sr-dir OUT/t0.8``
    OUT/t0.8/per_image.csv                   one row per image (columns: :func:`columns`)
    OUT/t0.8/per_sample.csv                  one row per SR sample (PSNR, LR-PSNRs)
    OUT/t0.8/summary.json                    dataset means (plain mean of per-image values)
    OUT/results.json, OUT/results.csv        every temperature, one row each
    OUT/plots/*.png                          PSNR, LR-PSNR, diversity, LPIPS vs temperature,
                                             perception-distortion, best-of-n

With ``--sr-dir`` the run directory is ``OUT`` itself (``per_image.csv``,
``per_sample.csv``, ``summary.json``) and the temperature is null.

Metrics (exact definitions in the project's evaluation spec and :mod:`flow.ops.metrics`); per
image the value is the mean over its samples unless stated:

* ``psnr_rgb``, ``ssim_rgb``: uint8 RGB, full image, no shave (SRFlow test.py);
  ``psnr_rgb_best``: the best sample's PSNR;
* ``psnr_y_shave{s}``: BT.601 Y, ``s``-pixel border removed (``--shave``, default scale);
* ``lr_psnr_mean`` / ``lr_psnr_worst``: NTIRE LR-PSNR ``PSNR(D(sr_k), D(gt))``, mean and
  minimum over samples; ``lr_psnr_given``: ``PSNR(lr, D(sr_k))`` against the given LR
  (the bicubic LR we made when no ``--lr-dir``), mean over samples;
* ``lpips_mean`` and ``ntire_diversity``: LPIPS alex v0.1 (spatial maps), only when the
  ImageNet AlexNet weights are present offline; otherwise null and the summary says
  why in ``lpips_unavailable_reason``;
* ``mse_diversity``: NTIRE 2022 MSE diversity score; ``pixel_std``: mean per-pixel std
  across samples (0-255);
* ``nll_bpd``: NLL of the GT in bits per dim with uniform dequantization (noise seeded
  by ``--seed``); ``nll_official_bpp``: the number the official code logs (bits per
  pixel, no dequantization constant).  Null for ``--sr-dir``, ``--no-nll`` or tiled
  images;
* ``sec_per_sample``: (encoder time + the decode time of this temperature's samples) /
  samples; ``peak_rss_mb``: peak resident memory of the process after the image
  (``peak_gpu_mb`` too on CUDA).

Sample ``k`` of every image uses seed ``--seed + k`` (as :meth:`SRFlow.sample`), so
``python -m flow.sr LR.png --temperature t --seed S+k --tile 0`` reproduces it.

Infinities (an exactly LR-consistent sample has LR-PSNR = +inf) are kept, not capped:
means that include one are +inf.  In JSON they are written as the *string* ``"inf"``
(``"-inf"``; NaN as null) because JSON has no infinity; in CSV as ``inf``.
``results.json`` records the convention under ``"inf_encoding"``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from ..ops.images import IMAGE_EXTS
from .ntire import (INF_ENCODING, NTIRE_RE, SAMPLE_COLUMNS, check_lr_size, columns, fail, json_load_value,
                    json_safe, list_images, metric_keys, ntire_name, pair_lr, read_image, scan_sr_dir, temp_dirname,
                    write_csv, write_json)

__all__ = ["INF_ENCODING", "NTIRE_RE", "SAMPLE_COLUMNS", "check_lr_size", "columns", "fail", "json_load_value",
           "json_safe", "list_images", "metric_keys", "ntire_name", "pair_lr", "read_image", "scan_sr_dir",
           "temp_dirname", "write_csv", "write_json", "image_metrics", "dataset_summary", "best_of_n", "Run",
           "parse_temperatures", "evaluate_model", "evaluate_sr_dir", "build_parser", "main"]


# ----------------------------------------------------------------------------
# metrics of one image
# ----------------------------------------------------------------------------

def image_metrics(samples: list[np.ndarray], gt: np.ndarray, lr_given: np.ndarray, scale: int, shave: int,
                  lpips=None) -> tuple[dict, list[dict]]:
    """Per-image metrics (see the module docstring) and per-sample rows.

    ``samples``: full-size uint8 SR images (at least the GT size; cropped to it for
    every GT-based metric); ``lr_given``: the LR each D(sr) is compared with, whose
    size times ``scale`` must equal the SR size (or the GT size)."""
    from ..ops.imresize import imresize
    from ..ops.metrics import diversity_score, mse_diversity, pixel_std_diversity, psnr, psnr_y, ssim

    h, w = gt.shape[:2]
    crops = [np.ascontiguousarray(s[:h, :w]) for s in samples]
    d_gt = imresize(gt, 1.0 / scale)
    rows = []
    for k, (s, c) in enumerate(zip(samples, crops)):
        full = s if (s.shape[0] == lr_given.shape[0] * scale and s.shape[1] == lr_given.shape[1] * scale) else c
        rows.append({
            "sample": k,
            "psnr_rgb": psnr(c, gt),
            "ssim_rgb": ssim(c, gt),
            "psnr_y": psnr_y(c, gt, shave),
            "lr_psnr_ntire": psnr(imresize(c, 1.0 / scale), d_gt),
            "lr_psnr_given": psnr(lr_given, imresize(full, 1.0 / scale)),
        })
    p = [r["psnr_rgb"] for r in rows]
    lrp = [r["lr_psnr_ntire"] for r in rows]
    m = {
        "samples": len(samples),
        "psnr_rgb": float(np.mean(p)),
        "psnr_rgb_best": float(np.max(p)),
        "ssim_rgb": float(np.mean([r["ssim_rgb"] for r in rows])),
        f"psnr_y_shave{shave}": float(np.mean([r["psnr_y"] for r in rows])),
        "lr_psnr_mean": float(np.mean(lrp)),
        "lr_psnr_worst": float(np.min(lrp)),
        "lr_psnr_given": float(np.mean([r["lr_psnr_given"] for r in rows])),
        "mse_diversity": mse_diversity(crops, gt),
        "pixel_std": pixel_std_diversity(crops),
        "lpips_mean": None,
        "ntire_diversity": None,
    }
    if lpips is not None and lpips.available:
        maps = lpips.spatial_maps(crops, gt)
        m["lpips_mean"] = float(np.mean(maps))
        m["ntire_diversity"] = diversity_score(maps)
    for r in rows:
        r.pop("psnr_y")
    return m, rows


def dataset_summary(rows: list[dict], keys: list[str]) -> dict:
    """Plain mean of the per-image values of each key (null when any is null)."""
    out = {}
    for k in keys:
        vals = [r.get(k) for r in rows]
        if not vals or any(v is None for v in vals):
            out[k] = None
        else:
            out[k] = float(np.mean(vals)) if k != "samples" else vals[0]
    return out


def best_of_n(sample_psnrs: list[list[float]]) -> list[float]:
    """Mean over images of max(PSNR of samples 0..n-1), for n = 1..K."""
    if not sample_psnrs:
        return []
    arr = np.asarray(sample_psnrs, dtype=np.float64)
    return [float(v) for v in np.maximum.accumulate(arr, axis=1).mean(axis=0)]


# ----------------------------------------------------------------------------
# runs
# ----------------------------------------------------------------------------

class Run:
    """One temperature (or one scored folder): accumulates rows, writes its files."""

    def __init__(self, run_dir: Path, label: str, temperature, shave: int, samples: int):
        self.dir = Path(run_dir)
        self.label = label
        self.temperature = temperature
        self.shave = shave
        self.samples = samples
        self.rows: list[dict] = []
        self.sample_rows: list[dict] = []
        self.sample_psnrs: list[list[float]] = []

    def add(self, i: int, gt_name: str, metrics: dict, sample_rows: list[dict]):
        row = {"image": i, "gt_name": gt_name, **metrics}
        self.rows.append(row)
        for r in sample_rows:
            self.sample_rows.append({"image": i, "gt_name": gt_name, **r})
        self.sample_psnrs.append([r["psnr_rgb"] for r in sample_rows])

    def summary(self, extra: dict) -> dict:
        keys = metric_keys(self.shave)
        s = {"label": self.label, "temperature": self.temperature, "n_images": len(self.rows),
             "samples": self.samples}
        s.update(dataset_summary(self.rows, [k for k in keys if k != "peak_rss_mb" and k != "peak_gpu_mb"]))
        s["peak_rss_mb"] = max((r["peak_rss_mb"] for r in self.rows), default=None)
        gpu = [r.get("peak_gpu_mb") for r in self.rows if r.get("peak_gpu_mb") is not None]
        s["peak_gpu_mb"] = max(gpu) if gpu else None
        s["inf_counts"] = {k: int(sum(1 for r in self.rows if isinstance(r.get(k), float) and math.isinf(r[k])))
                           for k in ("psnr_rgb", "lr_psnr_mean", "lr_psnr_worst", "lr_psnr_given")}
        s["best_of_n_psnr"] = best_of_n(self.sample_psnrs)
        s.update(extra)
        return s

    def write(self, extra: dict) -> dict:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_csv(self.dir / "per_image.csv", columns(self.shave), self.rows)
        write_csv(self.dir / "per_sample.csv", SAMPLE_COLUMNS, self.sample_rows)
        s = self.summary(extra)
        write_json(self.dir / "summary.json", s)
        return s


def _gpu_peak_mb(device) -> float | None:
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return None


def _save_png(img: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(img).save(path, compress_level=3)


def parse_temperatures(s: str) -> list[float]:
    try:
        ts = [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        fail(f"--temperatures must be comma-separated numbers, got {s!r}")
    if not ts or any(t < 0 or not math.isfinite(t) for t in ts):
        fail(f"--temperatures must be non-negative numbers, got {s!r}")
    if len(set(temp_dirname(t) for t in ts)) != len(ts):
        fail(f"--temperatures has duplicates: {s!r}")
    return ts


def evaluate_model(a) -> list[dict]:
    import torch
    from tqdm import tqdm

    from ..models.checkpoint import load_model
    from ..ops.images import lr_tensor, to_uint8
    from ..ops.imresize import make_lr
    from ..ops.metrics import LpipsMetric, ntire_crop
    from .sr import peak_rss_mb, super_resolve

    temps = parse_temperatures(a.temperatures)
    if a.samples < 1:
        fail("--samples must be >= 1")
    if a.tile > 0:
        from .sr import plan_tiles

        try:
            plan_tiles(10 ** 6, a.tile, a.overlap, 2)
        except ValueError as e:
            fail(f"bad tiling (--tile {a.tile} --overlap {a.overlap}): {e}")
    gt_files = list_images(a.gt_dir, "GT")
    try:
        model = load_model(a.model, config=a.config, device=a.device)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        fail(f"cannot load model: {e}")
    s = model.scale
    if a.scale is not None and a.scale != s:
        fail(f"--scale {a.scale} but the model is {s}x")
    shave = s if a.shave is None else a.shave
    lr_files = pair_lr(gt_files, list_images(a.lr_dir, "LR"), s) if a.lr_dir else None
    lp = None if a.no_lpips else LpipsMetric(device=str(model.device))
    reason = None if (lp is not None and lp.available) else (
        "disabled with --no-lpips" if lp is None else lp.reason)
    out = Path(a.out)
    runs = [Run(out / temp_dirname(t), temp_dirname(t), t, shave, a.samples) for t in temps]
    for r in runs:
        r.dir.mkdir(parents=True, exist_ok=True)
        stale = [f for f in r.dir.iterdir() if f.suffix.lower() in IMAGE_EXTS]
        if stale and a.overwrite and all(NTIRE_RE.match(f.stem) for f in stale):
            for f in stale:
                f.unlink()
        elif stale:
            fail(f"{r.dir} already contains images ({', '.join(sorted(f.name for f in stale)[:3])} ...): "
                 "choose another --out folder" + ("" if a.overwrite else
                                                   " or pass --overwrite to replace earlier results"))
    nll_note = None
    bar = tqdm(total=len(gt_files) * len(temps) * a.samples, unit="sample", disable=a.quiet, file=sys.stderr)
    dev = model.device
    for i, gf in enumerate(gt_files):
        gt_full = read_image(gf)
        gt = np.ascontiguousarray(ntire_crop(gt_full, 8))
        if gt.shape[0] < 8 or gt.shape[1] < 8:
            fail(f"GT image {gf.name} is smaller than 8x8 after the NTIRE crop")
        if lr_files is not None:
            lr = read_image(lr_files[i])
            check_lr_size(gt_full, gt, lr, s, f"{gf.name} / {lr_files[i].name}")
        else:
            lr = make_lr(gt, s)
        hr_ref = gt if lr.shape[0] * s == gt.shape[0] and lr.shape[1] * s == gt.shape[1] else gt_full
        m = model.lr_multiple
        hp, wp = -(-lr.shape[0] // m) * m, -(-lr.shape[1] // m) * m
        tiled = a.tile > 0 and (hp > (a.tile // m) * m or wp > (a.tile // m) * m)
        t0 = time.perf_counter()
        cond = None
        with torch.inference_mode():
            if not tiled:
                cond = model.encode_condition(lr_tensor(lr).to(dev))
        t_enc = time.perf_counter() - t0
        nll = (None, None)
        if not a.no_nll and not tiled:
            with torch.inference_mode():
                g = torch.Generator().manual_seed(int(a.seed))
                r = model.nll(lr_tensor(hr_ref).to(dev), cond, dequantize=True, quant=32, generator=g)
            nll = (float(r.bits_per_dim[0]), float(r.official_bpp[0]))
        elif tiled and not a.no_nll:
            nll_note = "NLL not computed for images larger than --tile (it needs the whole image at once)"
        for t, run in zip(temps, runs):
            t1 = time.perf_counter()
            if tiled:
                srs = super_resolve(model, lr, t, a.seed, a.samples, tile=a.tile, overlap=a.overlap,
                                    margin=a.margin, progress=None)
                bar.update(a.samples)
            else:
                srs = []
                with torch.inference_mode():
                    for k in range(a.samples):
                        lat = model.draw_latents(cond, t, int(a.seed) + k, 1)
                        srs.append(to_uint8(model.decode(cond, lat)))
                        bar.update(1)
            dt = time.perf_counter() - t1
            for k, img in enumerate(srs):
                _save_png(img, run.dir / ntire_name(i, k, a.samples))
            met, srows = image_metrics(srs, gt, lr, s, shave, lp)
            for k, r in enumerate(srows):
                r["seed"] = int(a.seed) + k
                r["file"] = ntire_name(i, k, a.samples)
            met["nll_bpd"], met["nll_official_bpp"] = nll
            met["sec_per_sample"] = (t_enc + dt) / a.samples
            met["peak_rss_mb"] = peak_rss_mb()
            met["peak_gpu_mb"] = _gpu_peak_mb(dev)
            run.add(i, gf.name, met, srows)
        del cond
    bar.close()
    extra = {"mode": "model", "model": str(a.model), "architecture": model.cfg.name, "scale": s,
             "shave": shave, "seed": a.seed, "gt_dir": str(a.gt_dir),
             "lr": str(a.lr_dir) if a.lr_dir else "MATLAB bicubic of the cropped GT",
             "tile": a.tile, "lpips_unavailable_reason": reason, "nll_note": nll_note,
             "nll_definition": "bits/dim with uniform dequantization (quant 32); official_bpp = "
                               "bits per pixel without the dequantization constant",
             "device": str(dev), "inf_encoding": INF_ENCODING}
    return [r.write(extra) for r in runs], reason, shave


def evaluate_sr_dir(a):
    from tqdm import tqdm

    from ..ops.imresize import make_lr
    from ..ops.metrics import LpipsMetric, ntire_crop
    from .sr import peak_rss_mb

    if a.scale is None:
        fail("--sr-dir needs --scale")
    s = int(a.scale)
    shave = s if a.shave is None else a.shave
    gt_files = list_images(a.gt_dir, "GT")
    per, k = scan_sr_dir(a.sr_dir, len(gt_files))
    lr_files = pair_lr(gt_files, list_images(a.lr_dir, "LR"), s) if a.lr_dir else None
    lp = None if a.no_lpips else LpipsMetric()
    reason = None if (lp is not None and lp.available) else (
        "disabled with --no-lpips" if lp is None else lp.reason)
    label = a.label or Path(a.sr_dir).name
    run = Run(Path(a.out), label, None, shave, k)
    bar = tqdm(total=len(gt_files), unit="img", disable=a.quiet, file=sys.stderr)
    for i, gf in enumerate(gt_files):
        gt_full = read_image(gf)
        gt = np.ascontiguousarray(ntire_crop(gt_full, 8))
        srs = [read_image(f) for f in per[i]]
        for f, img in zip(per[i], srs):
            if img.shape[0] < gt.shape[0] or img.shape[1] < gt.shape[1]:
                fail(f"size mismatch: SR {f.name} is {img.shape[1]}x{img.shape[0]}, smaller than the "
                     f"GT {gf.name} after the NTIRE crop ({gt.shape[1]}x{gt.shape[0]})")
        if lr_files is not None:
            lr = read_image(lr_files[i])
            check_lr_size(gt_full, gt, lr, s, f"{gf.name} / {lr_files[i].name}")
            want = (lr.shape[0] * s, lr.shape[1] * s)
            for f, img in zip(per[i], srs):
                if img.shape[:2] != want:
                    fail(f"size mismatch: SR {f.name} is {img.shape[1]}x{img.shape[0]}, but LR "
                         f"{lr_files[i].name} x{s} is {want[1]}x{want[0]}")
        else:
            lr = make_lr(gt, s)
            srs = [np.ascontiguousarray(x[:gt.shape[0], :gt.shape[1]]) for x in srs]
        met, srows = image_metrics(srs, gt, lr, s, shave, lp)
        for r, f in zip(srows, per[i]):
            r["seed"] = None
            r["file"] = f.name
        met["nll_bpd"] = met["nll_official_bpp"] = None
        met["sec_per_sample"] = None
        met["peak_rss_mb"] = peak_rss_mb()
        met["peak_gpu_mb"] = None
        run.add(i, gf.name, met, srows)
        bar.update(1)
    bar.close()
    extra = {"mode": "sr-dir", "sr_dir": str(a.sr_dir), "scale": s, "shave": shave, "gt_dir": str(a.gt_dir),
             "lr": str(a.lr_dir) if a.lr_dir else "MATLAB bicubic of the cropped GT",
             "lpips_unavailable_reason": reason, "nll_note": "no model: NLL not available",
             "inf_encoding": INF_ENCODING}
    return [run.write(extra)], reason, shave


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m flow.evaluate",
                                 description="NTIRE-compatible evaluation of SRFlow models or SR folders.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help=".safetensors (ours) or official .pth (with --config)")
    src.add_argument("--sr-dir", help="score existing SR images in the NTIRE layout (needs --scale)")
    ap.add_argument("--config", default=None, help="official YAML or preset name for .pth models")
    ap.add_argument("--gt-dir", required=True)
    ap.add_argument("--lr-dir", default=None, help="given LR images (default: MATLAB bicubic of the GT)")
    ap.add_argument("--scale", type=int, default=None, help="required with --sr-dir; checked against the model")
    ap.add_argument("--temperatures", default="0,0.5,0.8,0.9,1.0")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shave", type=int, default=None, help="border for Y-PSNR (default: the scale)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--label", default=None, help="name of the scored method (--sr-dir)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tile", type=int, default=0, help="tile LR images larger than this (0: never)")
    ap.add_argument("--overlap", type=int, default=16)
    ap.add_argument("--margin", type=int, default=16)
    ap.add_argument("--no-nll", action="store_true")
    ap.add_argument("--no-lpips", action="store_true", help="skip LPIPS even when its weights exist")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace the NTIRE-layout images of an earlier run in the temperature folders")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    return ap


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    if a.threads > 0:
        import torch

        torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.sr_dir:
        summaries, reason, shave = evaluate_sr_dir(a)
    else:
        summaries, reason, shave = evaluate_model(a)
    keys = ["label", "temperature", "n_images", "samples"] + [k for k in metric_keys(shave) if k != "samples"]
    write_csv(out / "results.csv", keys, summaries)
    write_json(out / "results.json", {"runs": summaries, "inf_encoding": INF_ENCODING,
                                      "lpips_unavailable_reason": reason})
    plots = []
    if not a.no_plots:
        from .plots import plot_all

        plots = plot_all(summaries, out / "plots", f"psnr_y_shave{shave}", reason)
    if not a.quiet:
        for smr in summaries:
            print(f"{smr['label']}: PSNR {_fmt(smr['psnr_rgb'])} SSIM {_fmt(smr['ssim_rgb'], 4)} "
                  f"LR-PSNR {_fmt(smr['lr_psnr_mean'])}/{_fmt(smr['lr_psnr_worst'])} "
                  f"LPIPS {_fmt(smr['lpips_mean'], 4)} σ {_fmt(smr['pixel_std'])} "
                  f"MSE-div {_fmt(smr['mse_diversity'])} NLL {_fmt(smr['nll_bpd'], 4)} bpd")
        if reason:
            print(f"LPIPS unavailable: {reason}")
        print(f"wrote {out / 'results.json'}" + (f" and {len(plots)} plots in {out / 'plots'}" if plots else ""))
    return 0


def _fmt(v, nd=2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.{nd}f}"


if __name__ == "__main__":
    sys.exit(main())
