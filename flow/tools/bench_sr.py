"""Benchmark section: time and peak memory of ``python -m flow.sr`` (imported by
``python -m flow.bench``; also runnable alone: ``python -m flow.tools.bench_sr [--quick]``).

For each architecture -- the shipped model (``assets/studio_4x.safetensors`` when
present, else the ``studio_4x`` preset with random weights) and the official DF2K 4x
architecture (``srflow_df2k_4x``, random weights: speed and memory do not depend on
the values) -- it super-resolves the scikit-image *astronaut* photo used directly as
the LR image (512x512, ``--quick``: 128x128) at 4x, one sample at tau 0.8:

* untiled (``--tile 0``), only when a memory estimate fits in the available RAM (and
  killed, reported as not fitting, if MemAvailable falls below 1 GiB while it runs);
* tiled with the default tile (128 LR px, overlap 16, margin 16);
* the same tile on a quarter-area image (256x256), to show that peak memory barely
  follows the image size (what remains is the uint8 output, 3 bytes per HR pixel, and
  the carry strip; latents go to disk: ``--latents disk``);
* a smaller tile (64) on that image, to show that peak memory follows the tile size.

``--quick``: LR 128 and 64, tiles 32 and 16, overlap 4, margin 8.

Every configuration runs in a fresh child process; ``peak_rss_mb`` is the child's
``ru_maxrss`` (from ``os.wait4``), which includes Python, torch and the model weights
(the ``baseline`` row: the same child on a 16x16 LR).  ``median_s`` is the
super-resolution time measured inside the child (model loading, imports and PNG
writing excluded; the note gives the child's wall time).  Children use one torch
thread unless ``args.threads`` says otherwise (stable numbers on a shared machine).
Runs that take over a minute are not repeated.

Measured figures: README (Benchmarks) and ``docs/MEASUREMENTS.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "assets" / "studio_4x.safetensors"


def _mem_available_mb() -> float:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("inf")


def _model_file(name: str, tmp: Path) -> tuple[Path, str]:
    """(path, description) of the model to benchmark for architecture ``name``."""
    import torch

    from ..models.checkpoint import save_safetensors
    from ..models.registry import build, preset

    if name == "studio_4x" and SHIPPED.is_file():
        return SHIPPED, "shipped weights"
    torch.manual_seed(0)
    path = tmp / f"{name}_random.safetensors"
    save_safetensors(build(preset(name)).eval(), path)
    return path, "random weights"


def estimate_untiled_mb(model_path: Path, lr: int) -> float:
    """Rough peak memory increase of an untiled run (MiB): the cached condition of a
    32x32 LR scaled by area, x1.2, plus 2 GiB per 512x512 LR of working tensors (an
    overestimate: see ``docs/MEASUREMENTS.md``)."""
    import torch

    from ..models.checkpoint import load_model

    model = load_model(model_path, device="cpu")
    with torch.inference_mode():
        cond = model.encode_condition(torch.rand(1, 3, 32, 32))
    area = (lr / 32.0) ** 2
    return (cond.nbytes() * area * 1.2 + 2 * 2 ** 30 * area / 256.0) / 2 ** 20


#: a child is killed (and reported as not fitting) when MemAvailable drops below this
MIN_AVAILABLE_MB = 1024.0


def _run_child(model_path: Path, lr_png: Path, tile: int, out_dir: Path, threads: int, extra=()) -> dict:
    import threading

    stats = out_dir / f"stats_{time.time_ns()}.jsonl"
    cmd = [sys.executable, "-m", "flow.sr", str(lr_png), "--model", str(model_path), "--tile", str(tile),
           "--temperature", "0.8", "--seed", "0", "--out-dir", str(out_dir), "--latents", "disk",
           "--quiet", "--stats-json", str(stats), "--device", "cpu", *extra]
    if threads > 0:
        cmd += ["--threads", str(threads)]
    errf = out_dir / f"stderr_{time.time_ns()}.txt"
    done, killed = threading.Event(), []
    t0 = time.perf_counter()
    with open(errf, "wb") as fe:
        p = subprocess.Popen(cmd, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=fe)

        def watch():       # never let an untiled run push the machine into swapping / the OOM killer
            while not done.wait(0.5):
                avail = _mem_available_mb()
                if avail < MIN_AVAILABLE_MB:
                    killed.append(avail)
                    p.kill()
                    return

        th = threading.Thread(target=watch, daemon=True)
        th.start()
        _, status, ru = os.wait4(p.pid, 0)       # this child's own rusage (peak RSS)
        done.set()
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = errf.read_text(errors="replace")
    if killed:
        return {"ok": False, "error": f"did not fit: killed when MemAvailable fell to {killed[0]:.0f} MiB",
                "peak_rss_mb": ru.ru_maxrss / 1024.0, "wall": wall}
    if p.returncode != 0:
        return {"ok": False, "error": err.strip().splitlines()[-1][:200] if err.strip() else f"exit {p.returncode}",
                "peak_rss_mb": ru.ru_maxrss / 1024.0, "wall": wall}
    rec = json.loads(stats.read_text().splitlines()[-1])
    rec.update(ok=True, peak_rss_mb=ru.ru_maxrss / 1024.0, wall=wall)
    return rec


def _measure(name: str, model_path: Path, lr_png: Path, tile: int, out_dir: Path, repeats: int,
             threads: int, extra_note: str = "", extra_args=()) -> dict:
    runs = []
    for r in range(max(1, repeats)):
        rec = _run_child(model_path, lr_png, tile, out_dir, threads, extra_args)
        runs.append(rec)
        if not rec["ok"] or rec["wall"] > 60:
            break
    ok = [r for r in runs if r["ok"]]
    if not ok:
        return {"name": name, "median_s": None, "peak_rss_mb": round(runs[0]["peak_rss_mb"], 1),
                "note": f"failed: {runs[0]['error']}"}
    secs = float(np.median([r["seconds"] for r in ok]))
    rss = float(max(r["peak_rss_mb"] for r in ok))
    last = ok[-1]
    note = (f"{last['tiles']} tile(s), max LR window {last['max_window'][0]}x{last['max_window'][1]}, "
            f"latents {last['latent_backend']} {last['latent_mb']:.0f} MiB, {last['threads']} thread(s), "
            f"wall {float(np.median([r['wall'] for r in ok])):.1f} s incl. startup, {len(ok)} run(s)")
    if extra_note:
        note += "; " + extra_note
    return {"name": name, "median_s": round(secs, 3), "peak_rss_mb": round(rss, 1), "note": note}


def run(args) -> list[dict]:
    """Rows ``{name, median_s, peak_rss_mb, note}`` (see the module docstring)."""
    from PIL import Image
    import skimage.data

    quick = bool(getattr(args, "quick", False))
    repeats = int(getattr(args, "repeats", 1) or 1)
    threads = int(getattr(args, "threads", 0) or 0) or 1   # 1: stable numbers on a shared machine
    if quick:
        big, small, tile, small_tile, overlap, margin = 128, 64, 32, 16, 4, 8
    else:   # the flow.sr defaults
        big, small, tile, small_tile, overlap, margin = 512, 256, 128, 64, 16, 16
    arch = list(getattr(args, "sr_archs", None) or ("studio_4x", "srflow_df2k_4x"))
    tiling = ["--overlap", str(overlap), "--margin", str(margin)]
    tnote = f"overlap {overlap}, margin {margin}"
    rows = []
    astro = skimage.data.astronaut()
    with tempfile.TemporaryDirectory(prefix="bench_sr_") as td:
        tmp = Path(td)
        pngs = {}
        for n in (big, small, 16):
            y0 = (512 - n) // 2
            pngs[n] = tmp / f"lr_{n}.png"
            Image.fromarray(np.ascontiguousarray(astro[y0:y0 + n, y0:y0 + n])).save(pngs[n])
        for name in arch:
            path, desc = _model_file(name, tmp)
            out = tmp / f"out_{name}"
            out.mkdir()
            lab = f"sr {name}"

            def meas(title, n, t, note=desc):
                return _measure(f"{lab} {title}", path, pngs[n], t, out, repeats, threads,
                                note + (f", {tnote}" if t > 0 else ""), tiling)

            rows.append(_measure(f"{lab} baseline LR16 (startup+weights)", path, pngs[16], 0, out, 1, threads,
                                 desc))
            est = estimate_untiled_mb(path, big) + (rows[-1]["peak_rss_mb"] or 0.0)
            avail = _mem_available_mb()
            if est < 0.95 * avail:
                rows.append(meas(f"LR{big} untiled", big, 0, f"{desc}; estimated {est:.0f} MiB"))
            else:
                rows.append({"name": f"{lab} LR{big} untiled", "median_s": None, "peak_rss_mb": None,
                             "note": f"skipped: estimated {est:.0f} MiB > 95% of {avail:.0f} MiB available"})
            rows.append(meas(f"LR{big} tile{tile}", big, tile))
            rows.append(meas(f"LR{small} tile{tile}", small, tile))
            rows.append(meas(f"LR{small} tile{small_tile}", small, small_tile))
            base = rows[-5]["peak_rss_mb"]
            for r in rows[-4:]:
                if base and r.get("peak_rss_mb"):
                    r["rss_over_baseline_mb"] = round(r["peak_rss_mb"] - base, 1)
                    r["note"] = f"+{r['peak_rss_mb'] - base:.0f} MiB over the baseline row; " + r["note"]
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flow.tools.bench_sr")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each child (default 1)")
    ap.add_argument("--sr-archs", nargs="*", default=None)
    ap.add_argument("--json", default=None, help="also write the rows here")
    a = ap.parse_args(argv)
    rows = run(a)
    w = max(len(r["name"]) for r in rows)
    for r in rows:
        s = "-" if r["median_s"] is None else f"{r['median_s']:.2f} s"
        m = "-" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f} MiB"
        print(f"{r['name']:<{w}}  {s:>10}  {m:>10}  {r.get('note', '')}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
