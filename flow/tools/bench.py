"""Benchmarks: ``python -m flow.bench [--sections core,sr,hcflow] [--sizes 64,128]
[--repeats N] [--quick] [--threads N] [--no-memory] [--json out.json]``.

Sections
--------
``SECTIONS`` maps a section name to a callable ``run(args) -> list[dict]`` or to the
import path of a module exposing such a ``run``.  Besides the entries listed there,
every module ``flow/tools/bench_<name>.py`` is picked up as section ``<name>``, so a new
section needs no edit here.  A section whose module is missing is skipped with a note.
Sections that time the app live with the app and run through the same runner
(``python -m app.bench_editing``: section ``editing``).
A row is a dict with ``name`` and optionally ``median_s``, ``ratio``, ``peak_rss_mb``
and ``note``; other keys go to the JSON output only.

The ``core`` section (this file)
--------------------------------
For the official DF2K 4x architecture (preset ``srflow_df2k_4x``, random weights: the
zero-initialised convs and ActNorms get mild random values so no work is trivially
zero; invertible 1x1 convs keep their random orthogonal init) at each ``--sizes`` LR
side, and for the shipped model (``assets/studio_4x.safetensors`` if present, else the
``studio_4x`` preset with random weights) at 128x128 LR, it measures

(a) the encoder: ``encode_condition(lr, cache=False)``;
(b) the cache build: ``flowUpsamplerNet.build_caches(cond)``;
(c) the first sample, end to end: ``sample(lr)`` = encoder + cache + one decode;
(d) every further sample of the same LR: ``sample(cond)``, decode only;
(e) the naive path, as the official code does per sample: ``encode_condition(lr,
    cache=False)`` + ``decode`` (every conditioning network run per step and sample);

with ratios naive/ours, and checks that the cached (fused, Winograd) decode equals the
uncached decode of the same latents, and the decode from the training-path encoder
(autograd on, NCHW) with per-step, unfused computation.

Times are medians over ``--repeats`` interleaved rounds (one warm-up round first), wall
clock, in this process (``cpu s``: its CPU time, less sensitive to other load when
running one thread; with more threads than free cores OpenMP's spin-waiting makes
both erratic: compare ``--threads 1``).  Memory: each figure comes from a fresh child process that
builds the model and the operation's inputs, calls ``malloc_trim(0)``, resets the
kernel's RSS high-water mark (``/proc/self/clear_refs`` = 5), reads ``VmRSS``, runs the
operation once, and reads ``VmHWM``: ``peak_rss_mb`` is the peak RSS *increase* during
the operation (all allocations: torch, oneDNN, Python), and the note gives the child's
absolute peak (which includes Python, torch and the model weights).
"""
from __future__ import annotations

import argparse
import ctypes
import importlib
import json
import os
import pkgutil
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "assets" / "studio_4x.safetensors"

#: Official SRFlow on this CPU, from the performance issue (random weights, 64x64 LR).
REFERENCE = {"encoder_s": 0.46, "sample_s": 1.4, "peak_rss_gb": 0.7}


# ----------------------------------------------------------------------------
# models and inputs
# ----------------------------------------------------------------------------

def load_bench_model(arch: str, seed: int = 0):
    """(model, description): shipped weights for ``studio_4x`` when present, else the
    preset with random weights (:func:`flow.models.randomize.randomize`)."""
    from ..models.randomize import randomize
    from ..models.registry import build, preset

    if arch == "studio_4x" and SHIPPED.is_file():
        from ..models.checkpoint import load_model

        return load_model(SHIPPED, device="cpu").eval(), "shipped weights"
    torch.manual_seed(seed)
    return randomize(build(preset(arch)), seed, expand=0.22).eval(), "random weights"


def bench_lr(side: int, seed: int = 0) -> torch.Tensor:
    """An LR image (1, 3, side, side) in [0, 1]: the held-out *astronaut* photo
    downscaled 4x (``flow.data``), or a smooth-ish random image if that is unavailable."""
    try:
        from ..ops.images import to_tensor
        from ..ops.imresize import make_lr
        from .data import heldout_images

        hr = heldout_images(("astronaut",), crop=side * 4)["astronaut"]
        lr = to_tensor(make_lr(hr, 4))[None]
        if lr.shape[-2:] == (side, side):
            return lr.float()
    except Exception:       # noqa: BLE001 - any missing data package: synthetic input
        pass
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((1, 3, side, side), generator=g)
    yy = torch.linspace(0, 1, side)[:, None]
    xx = torch.linspace(0, 1, side)[None, :]
    return (0.5 * x + 0.25 * (1 + torch.sin(6 * yy + 4 * xx))).clamp(0, 1)


# ----------------------------------------------------------------------------
# the measured operations (shared by the timing loop and the memory children)
# ----------------------------------------------------------------------------

OPS = ("encoder", "cache", "first", "further", "naive")
OP_LABEL = {
    "encoder": "(a) encoder (encode_condition, no cache)",
    "cache": "(b) cache build",
    "first": "(c) first sample (encoder + cache + decode)",
    "further": "(d) further sample (decode, cached condition)",
    "naive": "(e) naive sample (encoder + uncached decode)",
}


def make_op(model, lr, op: str, k: int = 0):
    """(setup, run) for operation ``op``; ``setup()`` prepares what ``run`` reuses."""
    state = {}

    def setup():
        if op == "cache":
            state["cond"] = model.encode_condition(lr, cache=False)
        elif op == "further":
            state["cond"] = model.encode_condition(lr)

    def run():
        if op == "encoder":
            return model.encode_condition(lr, cache=False)
        if op == "cache":
            model.flowUpsamplerNet.build_caches(state["cond"])
            return state["cond"]
        if op == "first":
            return model.sample(lr, temperature=0.8, seed=k)
        if op == "further":
            return model.sample(state["cond"], temperature=0.8, seed=k)
        cond = model.encode_condition(lr, cache=False)
        return model.decode(cond, model.draw_latents(cond, 0.8, k))

    return setup, run


# ----------------------------------------------------------------------------
# memory: one fresh child process per figure
# ----------------------------------------------------------------------------

def status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def reset_peak_rss() -> bool:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _child(spec: dict) -> dict:
    torch.set_num_threads(spec["threads"])
    model, _ = load_bench_model(spec["arch"])
    lr = bench_lr(spec["size"])
    setup, run = make_op(model, lr, spec["op"])
    with torch.inference_mode():
        setup()
        reset = reset_peak_rss()
        base = status_kb("VmRSS")
        t0 = time.perf_counter()
        run()
        dt = time.perf_counter() - t0
        hwm = status_kb("VmHWM")
    return {"delta_mb": (hwm - base) / 1024 if reset else None, "peak_mb": hwm / 1024,
            "base_mb": base / 1024, "seconds": dt, "reset": reset}


def measure_memory(arch: str, size: int, op: str, threads: int) -> dict | None:
    spec = {"arch": arch, "size": size, "op": op, "threads": threads}
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    try:
        out = subprocess.run([sys.executable, "-m", "flow.bench", "--_child", json.dumps(spec)],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=1800)
    except subprocess.TimeoutExpired:
        return None
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    sys.stderr.write(f"memory child {spec} failed:\n{out.stderr[-2000:]}\n")
    return None


# ----------------------------------------------------------------------------
# the core section
# ----------------------------------------------------------------------------

def _median(xs):
    return statistics.median(xs) if xs else None


def check_equivalence(model, lr, f64: bool = False) -> dict:
    """Max |difference| of decodes of the same latents: the fast cached path vs the
    uncached decode, vs the reference (training-path encoder: autograd mode, NCHW, and
    the uncached decode), the per-step (unfused) cache vs the reference, and with
    ``f64`` both fast and reference vs a float64 decode (the float32 rounding floor)."""
    with torch.inference_mode():
        cond_c = model.encode_condition(lr)
        cond_u = model.encode_condition(lr, cache=False)
        lat = model.draw_latents(cond_c, 0.8, 123)
        y_c = model.decode(cond_c, lat)
        y_u = model.decode(cond_u, lat)
    flags = [p.requires_grad for p in model.parameters()]
    try:     # autograd mode (the training code path) without building a graph
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.enable_grad():
            feats = model.RRDB.features(lr, model.flowUpsamplerNet.needed_features,
                                        list(model.cfg.flow.blocks))
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
    with torch.no_grad():
        cond_t = model.encode_condition(lr, cache=False)
        cond_t.features = {k: v.detach() for k, v in feats.items()}
        model.flowUpsamplerNet.build_caches(cond_t, fused=False)
        y_t = model.decode(cond_t, lat)        # per-step CondAffine.precompute caches
        cond_t.caches = None
        y_r = model.decode(cond_t, lat)        # uncached, from the training-path features
    res = {"cached_vs_uncached": float((y_c - y_u).abs().max()),
           "fast_vs_reference": float((y_c - y_r).abs().max()),
           "perstep_cache_vs_reference": float((y_t - y_r).abs().max()),
           "out_absmax": float(y_r.abs().max())}
    if f64:     # the float32 rounding floor: both paths against a float64 uncached decode
        import copy

        m64 = copy.deepcopy(model).double()
        with torch.no_grad():
            c64 = m64.encode_condition(lr.double(), cache=False)
            y64 = m64.decode(c64, [t.double() for t in lat.levels])
        del m64
        res["fast_vs_f64"] = float((y_c.double() - y64).abs().max())
        res["reference_vs_f64"] = float((y_r.double() - y64).abs().max())
    return res


def bench_arch(arch: str, size: int, repeats: int, memory: bool, threads: int) -> list[dict]:
    model, desc = load_bench_model(arch)
    lr = bench_lr(size)
    tag = f"{arch} {size}x{size} LR"
    ops = {op: make_op(model, lr, op, k=1 + i) for i, op in enumerate(OPS)}
    times = {op: [] for op in OPS}
    cpu = {op: [] for op in OPS}
    with torch.inference_mode():
        for r in range(repeats + 1):              # round 0 warms up
            for op, (setup, run) in ops.items():
                setup()
                c0, t0 = time.process_time(), time.perf_counter()
                run()
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
                if r > 0:
                    times[op].append(dt)
                    cpu[op].append(dc)
    med = {op: _median(v) for op, v in times.items()}
    mem = {op: measure_memory(arch, size, op, threads) for op in OPS} if memory else {}
    eq = check_equivalence(model, lr, f64=(arch != "srflow_df2k_4x" or size <= 64))
    rows = []
    for op in OPS:
        row = {"name": f"{tag}: {OP_LABEL[op]}", "median_s": med[op], "times_s": times[op],
               "cpu_s": _median(cpu[op])}
        if op in ("first", "further"):
            row["ratio"] = med["naive"] / med[op]
        m = mem.get(op)
        if m:
            row["peak_rss_mb"] = m["delta_mb"]
            row["abs_peak_rss_mb"] = m["peak_mb"]
            row["note"] = f"child peak RSS {m['peak_mb']:.0f} MB"
        rows.append(row)
    rows[0]["note"] = (rows[0].get("note", "") + f"; {desc}").lstrip("; ")
    n = sum(p.numel() for p in model.parameters())
    rows.append({"name": f"{tag}: naive/ours, first sample", "ratio": med["naive"] / med["first"],
                 "note": "target >= 1.3"})
    rows.append({"name": f"{tag}: naive/ours, further sample", "ratio": med["naive"] / med["further"],
                 "note": "target >= 3"})
    if arch == "srflow_df2k_4x" and size == 64:
        rows.append({"name": f"{tag}: issue reference 1.4 s / ours, first sample",
                     "ratio": REFERENCE["sample_s"] / med["first"],
                     "note": "official: encoder 0.46 s, 1.4 s/sample, ~0.7 GB peak RSS (issue; not re-measured here)"})
        rows.append({"name": f"{tag}: issue reference 1.4 s / ours, further sample",
                     "ratio": REFERENCE["sample_s"] / med["further"]})
    tol = 1e-5 * max(1.0, eq["out_absmax"])
    ok = eq["cached_vs_uncached"] <= tol and eq["fast_vs_reference"] <= tol
    f64 = (f"; vs float64: fast {eq['fast_vs_f64']:.1e}, reference {eq['reference_vs_f64']:.1e}"
           if "fast_vs_f64" in eq else "")
    rows.append({"name": f"{tag}: decode max |cached - uncached|", "value": eq["cached_vs_uncached"],
                 "note": (f"{eq['cached_vs_uncached']:.1e}; vs reference (training-path encoder, uncached) "
                          f"{eq['fast_vs_reference']:.1e}; per-step cache vs reference "
                          f"{eq['perstep_cache_vs_reference']:.1e}{f64}; |SR| max {eq['out_absmax']:.2f}; "
                          f"{'OK' if ok else 'FAIL'} (tol 1e-5 x max(1, |SR| max))"),
                 "equivalence": eq, "ok": ok})
    rows[0]["params"] = n
    return rows


def run_core(args) -> list[dict]:
    quick = bool(getattr(args, "quick", False))
    sizes = getattr(args, "sizes", None) or ([64] if quick else [64, 128])
    repeats = int(getattr(args, "repeats", 0) or (2 if quick else 3))
    memory = not getattr(args, "no_memory", False)
    threads = torch.get_num_threads()
    rows = []
    for s in sizes:
        rows += bench_arch("srflow_df2k_4x", s, repeats, memory, threads)
    rows += bench_arch("studio_4x", 64 if quick else 128, repeats, memory, threads)
    return rows


#: section name -> callable ``run(args)`` or module path exposing ``run(args)``
SECTIONS: dict = {
    "core": run_core,
    "sr": "flow.tools.bench_sr",
}
#: sections that time code outside the core, and where they run from
ELSEWHERE = {"editing": "python -m app.bench_editing (it times the app's editing session)"}


def all_sections(extra: dict | None = None) -> dict:
    """``SECTIONS``, every ``flow/tools/bench_<name>.py`` module not listed there, and
    ``extra`` (sections of callers outside the core, e.g. the app's)."""
    found = dict(SECTIONS)
    listed = {v for v in SECTIONS.values() if isinstance(v, str)}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("bench_"):
            mod = f"{__package__}.{info.name}"
            if mod not in listed:
                found.setdefault(info.name[len("bench_"):], mod)
    found.update(extra or {})
    return found


def run_section(name: str, target, args) -> list[dict]:
    if callable(target):
        return target(args)
    try:
        mod = importlib.import_module(target)
    except ModuleNotFoundError as e:
        what = "not found" if e.name == target else f"needs missing module {e.name}"
        return [{"name": f"[{name}] skipped", "note": f"{target} {what}"}]
    if not hasattr(mod, "run"):
        return [{"name": f"[{name}] skipped", "note": f"{target} has no run(args)"}]
    return mod.run(args)


# ----------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------

def header() -> dict:
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "loadavg": load,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}


def format_table(rows: list[dict]) -> str:
    w = max([len(r["name"]) for r in rows] + [10])
    out = [f"{'benchmark':<{w}}  {'median s':>9}  {'cpu s':>7}  {'ratio':>7}  {'peak MB':>8}  note",
           "-" * (w + 50)]
    for r in rows:
        t, c = r.get("median_s"), r.get("cpu_s")
        ratio = r.get("ratio")
        mb = r.get("peak_rss_mb")
        out.append(f"{r['name']:<{w}}  {'' if t is None else f'{t:9.3f}':>9}  "
                   f"{'' if c is None else f'{c:7.2f}':>7}  "
                   f"{'' if ratio is None else f'x{ratio:.2f}':>7}  "
                   f"{'' if mb is None else f'{mb:8.0f}':>8}  {r.get('note', '')}")
    return "\n".join(out)


def main(argv=None, extra: dict | None = None, prog: str = "python -m flow.bench",
         default: list | None = None) -> int:
    """The benchmark runner; ``extra``: more sections (name -> ``run`` or module path),
    ``default``: the sections run without ``--sections`` (default: all)."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", default=None,
                    help="comma-separated sections (default: %s; known: %s)"
                    % (",".join(default) if default else "all", ", ".join(all_sections(extra))))
    ap.add_argument("--sizes", default=None, help="LR sides for the core section, e.g. 64,128")
    ap.add_argument("--repeats", type=int, default=0, help="timed rounds per measurement")
    ap.add_argument("--quick", action="store_true", help="small sizes, fewer repeats")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-RSS child processes")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        print(json.dumps(_child(json.loads(args._child))))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.sizes:
        args.sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    secs = all_sections(extra)
    names = [s.strip() for s in args.sections.split(",")] if args.sections else list(default or secs)
    info = header()
    print(f"torch {info['torch']} | python {info['python']} | threads {info['threads']} "
          f"(cpus {info['cpu_count']}) | load avg {info['loadavg']} | OMP_NUM_THREADS={info['OMP_NUM_THREADS']}")
    print("times: wall-clock medians of interleaved rounds (after a warm-up round), cpu s: this "
          "process's CPU time (all threads); peak MB: peak RSS increase during the operation, fresh "
          "child process per figure (malloc_trim + /proc/self/clear_refs reset, VmHWM - VmRSS)")
    busy = info["loadavg"] is not None and info["loadavg"][0] > 0.5 * (info["cpu_count"] or 1)
    if busy and info["threads"] > 1 and not info["OMP_WAIT_POLICY"]:
        print(f"note: load average {info['loadavg'][0]:.1f} on {info['cpu_count']} CPUs with {info['threads']} "
              "torch threads: OpenMP spin-waiting makes timings erratic and slow; use --threads 1 or "
              "OMP_WAIT_POLICY=PASSIVE")
    all_rows = []
    for name in names:
        if name not in secs:
            where = ELSEWHERE.get(name)
            rows = [{"name": f"[{name}] skipped", "note": f"run it with {where}" if where else "unknown section"}]
        else:
            t0 = time.perf_counter()
            rows = run_section(name, secs[name], args)
            sys.stdout.write(f"\n== {name} ({time.perf_counter() - t0:.0f} s) ==\n")
        print(format_table(rows))
        for r in rows:
            r.setdefault("section", name)
        all_rows += rows
    if args.json:
        Path(args.json).write_text(json.dumps({"header": info, "rows": all_rows}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
