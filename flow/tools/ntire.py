"""The NTIRE evaluation layout: file names (``{i:06d}_sample{k:05d}.png``), reading and
pairing GT / LR / SR folders with clear errors, and the result files (CSV and JSON, with
infinities written as the string ``"inf"``).  Used by :mod:`flow.tools.evaluate`."""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np

from ..ops import images
from ..ops.images import DataError, read_rgb

INF_ENCODING = ('+inf/-inf are written as the JSON strings "inf"/"-inf" (NaN as null); '
                'CSV cells use "inf". Means that include +inf are +inf (no capping).')
NTIRE_RE = re.compile(r"^(\d{6})(?:_sample(\d{5}))?$")

SAMPLE_COLUMNS = ["image", "gt_name", "sample", "seed", "file", "psnr_rgb", "ssim_rgb",
                  "lr_psnr_ntire", "lr_psnr_given"]


def columns(shave: int) -> list[str]:
    """Per-image CSV columns (the summary JSON has the same metric keys)."""
    return ["image", "gt_name", "samples", "psnr_rgb", "psnr_rgb_best", "ssim_rgb", f"psnr_y_shave{shave}",
            "lr_psnr_mean", "lr_psnr_worst", "lr_psnr_given", "lpips_mean", "ntire_diversity",
            "mse_diversity", "pixel_std", "nll_bpd", "nll_official_bpp", "sec_per_sample",
            "peak_rss_mb", "peak_gpu_mb"]


def metric_keys(shave: int) -> list[str]:
    return columns(shave)[3:]


def ntire_name(i: int, k: int, samples: int) -> str:
    """NTIRE file name of sample ``k`` of image ``i`` (``{i:06d}.png`` for one sample)."""
    return f"{i:06d}.png" if samples == 1 else f"{i:06d}_sample{k:05d}.png"


def temp_dirname(t: float) -> str:
    return f"t{float(t):g}"


# ----------------------------------------------------------------------------
# serialisation
# ----------------------------------------------------------------------------

def json_safe(v):
    """Recursively replace non-finite floats: +inf -> "inf", -inf -> "-inf", NaN -> None."""
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
    return v


def json_load_value(v):
    """Inverse of :func:`json_safe` for one value."""
    if v == "inf":
        return float("inf")
    if v == "-inf":
        return float("-inf")
    return v


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(round(v, 6))
    return str(v)


def write_csv(path: Path, cols: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([_cell(r.get(c)) for c in cols])


def write_json(path: Path, obj) -> None:
    Path(path).write_text(json.dumps(json_safe(obj), indent=1, allow_nan=False) + "\n")


# ----------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------

def fail(msg: str):
    raise SystemExit(f"error: {msg}")


def list_images(folder, what: str) -> list[Path]:
    """The images of a folder (:func:`flow.ops.images.list_images`); errors end the command."""
    try:
        return images.list_images(folder, what)
    except DataError as e:
        fail(str(e))


def read_image(path) -> np.ndarray:
    try:
        return read_rgb(path)
    except DataError as e:
        fail(str(e))


def pair_lr(gt_files: list[Path], lr_files: list[Path], scale: int) -> list[Path]:
    """The LR file of each GT: same stem, or ``<stem>x<scale>`` (DIV2K).  Errors list
    the unmatched names on both sides."""
    by_stem = {}
    for f in lr_files:
        by_stem.setdefault(f.stem, []).append(f)
    dup = [k for k, v in by_stem.items() if len(v) > 1]
    if dup:
        fail(f"LR folder has several files with the same name stem: {', '.join(sorted(dup)[:8])}")
    out, missing, used = [], [], set()
    for g in gt_files:
        cand = [s for s in (g.stem, f"{g.stem}x{scale}", f"{g.stem}_x{scale}") if s in by_stem]
        if not cand:
            missing.append(g.name)
            continue
        used.add(cand[0])
        out.append(by_stem[cand[0]][0])
    extra = sorted(by_stem[s][0].name for s in by_stem if s not in used)
    if missing or extra or len(gt_files) != len(lr_files):
        msg = f"GT/LR names do not match ({len(gt_files)} GT, {len(lr_files)} LR images)"
        if missing:
            msg += f"; no LR for GT: {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else "")
        if extra:
            msg += f"; LR without GT: {', '.join(extra[:8])}" + (" ..." if len(extra) > 8 else "")
        fail(msg + f" (LR names must be the GT stem or <stem>x{scale})")
    return out


def check_lr_size(gt_full: np.ndarray, gt: np.ndarray, lr: np.ndarray, scale: int, name: str) -> None:
    h, w = lr.shape[:2]
    got = (h * scale, w * scale)
    ok = (gt.shape[0], gt.shape[1])
    ok2 = (gt_full.shape[0], gt_full.shape[1])
    if got != ok and got != ok2:
        fail(f"size mismatch for {name}: LR {w}x{h} x{scale} = {got[1]}x{got[0]}, but the GT is "
             f"{ok2[1]}x{ok2[0]} ({ok[1]}x{ok[0]} after the NTIRE crop to multiples of 8)")


def scan_sr_dir(sr_dir, n_images: int) -> tuple[list[list[Path]], int]:
    """NTIRE-layout SR files per image, and the number of samples.  Errors on files
    outside the layout, indices without a GT, missing images, gaps or unequal counts."""
    files = list_images(sr_dir, "SR")
    per: dict[int, dict[int | None, Path]] = {}
    bad = []
    for f in files:
        m = NTIRE_RE.match(f.stem)
        if not m:
            bad.append(f.name)
            continue
        i = int(m.group(1))
        k = None if m.group(2) is None else int(m.group(2))
        per.setdefault(i, {})[k] = f
    if bad:
        fail(f"SR files not in the NTIRE layout ({{i:06d}}_sample{{k:05d}}.png or {{i:06d}}.png): "
             + ", ".join(bad[:8]) + (" ..." if len(bad) > 8 else ""))
    extra = sorted(i for i in per if i >= n_images)
    if extra:
        fail(f"SR images for {len(extra)} image index(es) without a GT (only {n_images} GT images): "
             + ", ".join(f"{i:06d}" for i in extra[:8]))
    missing = [i for i in range(n_images) if i not in per]
    if missing:
        fail(f"no SR image for {len(missing)} of {n_images} GT images: "
             + ", ".join(f"{i:06d}" for i in missing[:8]))
    out, counts = [], set()
    for i in range(n_images):
        d = per[i]
        if None in d and len(d) > 1:
            fail(f"image {i:06d} has both {i:06d}.png and _sampleNNNNN files")
        if None in d:
            out.append([d[None]])
        else:
            ks = sorted(d)
            if ks != list(range(len(ks))):
                fail(f"image {i:06d}: sample numbers are not 0..{len(ks) - 1} (got {ks[:12]})")
            out.append([d[k] for k in ks])
        counts.add(len(out[-1]))
    if len(counts) > 1:
        fail(f"images have different numbers of SR samples: {sorted(counts)}")
    return out, counts.pop()
