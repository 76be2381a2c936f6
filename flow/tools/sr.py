"""Batch super-resolution of files and folders, with seam-free tiling for large images.

Usage::

    python -m flow.sr INPUTS... --model MODEL [--config YAML|PRESET] [--scale S]
        [--temperature 0.8] [--samples 1] [--seed 0] [--out-dir sr_results]
        [--out-pattern "{stem}_x{scale}_t{temperature}_s{seed}.png"]
        [--tile 128] [--overlap 16] [--margin 16] [--latents auto|ram|disk] [--device auto]

``INPUTS`` are image files or folders (their images, not recursive).  Every input is
read with :func:`flow.data.read_rgb` (grayscale, RGBA -- alpha dropped --, palette and
16-bit images become 8-bit RGB) and written as an 8-bit RGB PNG.  Pattern fields:
``{stem}``, ``{scale}``, ``{temperature}`` (``%g``), ``{seed}`` (the seed of that
sample, ``--seed + k``) and ``{sample}`` (``k``).  Sample ``k`` uses seed ``seed + k``,
exactly as :meth:`SRFlow.sample`, so ``--samples 3 --seed 5`` writes the same images
as three runs with ``--seed 5``, ``6`` and ``7``.

Tiling (``--tile T`` LR pixels, ``0`` = never tile; an image whose padded LR fits in
one tile is processed whole, bit-identical to :meth:`SRFlow.sample`):

* the latents of every sample are drawn **once for the whole padded image** with the
  same CPU generator stream as :meth:`SRFlow.draw_latents` (verified bit-identical in
  the tests), so overlapping tiles decode the same noise;
* tiles of ``T`` LR pixels overlap by ``--overlap O`` LR pixels; each tile is
  computed on a *window* extended by ``--margin M`` LR pixels of real image context
  on every side (clipped at the image border, where the untiled model sees the same
  border): the RRDB condition is encoded on the window, the flow decodes the window
  from the matching crop of the global latents, and only the tile is kept;
* overlapping tiles are blended with raised-cosine ramps over the ``O * scale`` HR
  pixels of each overlap (weights sum to exactly 1; pixels covered by one tile are
  copied unchanged);
* one tile is in memory at a time.  Blended pixels are written into a preallocated
  uint8 output; the only buffers that grow with the image are that output (3 bytes
  per HR pixel per sample), a float32 carry strip ``O * scale`` rows high across the
  width, and -- with ``--latents ram`` -- the latents (12 bytes per HR pixel per
  sample).  ``--latents disk`` (the default ``auto`` picks it above 256 MiB) streams
  them into a temporary file instead, generated in chunks and read back per tile
  row by row.

Bound asserted in tests/test_sr.py (tiled vs untiled, same seed, on the 0..255 scale):
mean |delta| <= 0.01 and max |delta| <= 2, while the same tiling without margin is
asserted to exceed it (so the test can fail).  Measured seams: ``docs/MEASUREMENTS.md``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..models.protocol import Condition, FlowModel, Latents
from ..ops.images import DataError, list_images, lr_tensor, pad_to_multiple, to_uint8
DEFAULT_PATTERN = "{stem}_x{scale}_t{temperature}_s{seed}.png"
_CHUNK = 1 << 20          # latent values generated per randn call (a multiple of 16)


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------

def pad_lr(lr: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad an LR tensor at the bottom/right to a multiple, as ``encode_condition``."""
    return pad_to_multiple(lr, multiple)[0]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MiB)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2 ** 20


# ----------------------------------------------------------------------------
# global latents
# ----------------------------------------------------------------------------

class LatentStore:
    """The latents of ``n`` samples for a whole padded HR image (``Hp x Wp``).

    Values are exactly those of ``model.draw_latents`` for the untiled image: sample
    ``k`` seeds a CPU ``torch.Generator`` with ``seed + k`` and draws every level in the
    model's ``draw_order``, ``randn * temperature``.  ``backend='ram'`` calls
    ``model.draw_latents`` itself (on the model's device); ``backend='disk'`` draws each level in
    chunks of ``_CHUNK`` values (CPU ``randn`` fills 16-value blocks from one
    sequential uniform stream, so chunks of a multiple of 16 reproduce the single
    call bit for bit) and writes them to a temporary file; :meth:`crop` then reads a
    window back row by row, so memory stays bounded by the window.
    """

    def __init__(self, model: FlowModel, hp: int, wp: int, temperature: float, seed: int, n: int = 1,
                 backend: str = "auto", ram_limit_mb: float = 256.0, tmpdir=None):
        self.shapes = model.latent_shapes(hp, wp)
        self.strides = model.latent_strides
        self.n = int(n)
        self.hw = (hp, wp)
        per = sum(c * h * w for c, h, w in self.shapes) * 4
        self.nbytes = per * self.n
        if backend == "auto":
            backend = "disk" if self.nbytes > ram_limit_mb * 2 ** 20 else "ram"
        if backend not in ("ram", "disk"):
            raise ValueError(f"latent backend must be auto, ram or disk, got {backend!r}")
        self.backend = backend
        t = float(temperature)
        self._tmp = None
        if backend == "ram":       # model.draw_latents itself, for the padded size
            s = model.scale
            fake = Condition(lr_shape=(hp // s, wp // s), pad=(0, 0), features={}, hr_size=(hp, wp))
            lat = model.draw_latents(fake, t, int(seed), self.n)
            self.levels = [[lv[k:k + 1] for lv in lat.levels] for k in range(self.n)]
            return
        self._tmp = tempfile.TemporaryDirectory(prefix="srflow_latents_", dir=tmpdir)
        path = os.path.join(self._tmp.name, "latents.f32")
        self.offsets = []            # offsets[k][level] in bytes
        off = 0
        with open(path, "wb") as f:
            for k in range(self.n):
                g = torch.Generator().manual_seed(int(seed) + k)
                row = [0] * len(self.shapes)
                for i in model.draw_order(len(self.shapes)):
                    row[i] = off
                    total = self.shapes[i][0] * self.shapes[i][1] * self.shapes[i][2]
                    for size in _chunks(total):
                        f.write((torch.randn(size, generator=g) * t).numpy().tobytes())
                    off += total * 4
                self.offsets.append(row)
        self._fd = os.open(path, os.O_RDONLY)

    def crop(self, k: int, y0: int, y1: int, x0: int, x1: int) -> list[torch.Tensor]:
        """Sample ``k``'s latents for the padded-HR window ``[y0, y1) x [x0, x1)``
        (multiples of the coarsest stride), each level shaped (1, C, h, w)."""
        out = []
        for li, ((c, H, W), s) in enumerate(zip(self.shapes, self.strides)):
            a, b, l, r = y0 // s, y1 // s, x0 // s, x1 // s
            if self.backend == "ram":
                out.append(self.levels[k][li][..., a:b, l:r])
                continue
            buf = np.empty((c, b - a, r - l), np.float32)
            base = self.offsets[k][li]
            nb = (r - l) * 4
            for ci in range(c):
                for yi in range(b - a):
                    pos = base + ((ci * H + a + yi) * W + l) * 4
                    got = os.preadv(self._fd, [memoryview(buf[ci, yi]).cast("B")], pos)
                    if got != nb:
                        raise IOError("short read from the latent file")
            out.append(torch.from_numpy(buf)[None])
        return out

    def close(self):
        if self._tmp is not None:
            os.close(self._fd)
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _chunks(total: int):
    """Chunk sizes covering ``total`` values: multiples of 16, any tail merged into
    the last chunk so no chunk but a lone one is shorter than 16."""
    sizes = [_CHUNK] * (total // _CHUNK)
    rest = total - _CHUNK * len(sizes)
    if rest:
        if sizes and rest < 16:
            sizes[-1] += rest
        else:
            sizes.append(rest)
    return sizes


# ----------------------------------------------------------------------------
# tiling
# ----------------------------------------------------------------------------

def plan_tiles(n: int, tile: int, overlap: int, multiple: int) -> list[tuple[int, int]]:
    """Tiles ``[a, b)`` covering ``[0, n)`` (LR pixels, ``n`` a multiple of ``multiple``).

    Tiles start every ``tile - overlap`` pixels; consecutive tiles overlap by exactly
    ``overlap``; the last one is shortened to end at ``n`` (it is still longer than
    the overlap).  ``tile``/``overlap`` are rounded to multiples of ``multiple``
    (down/up) and ``overlap <= tile / 2``, so no pixel is in more than two tiles
    along one axis.
    """
    m = max(1, int(multiple))
    tile = (int(tile) // m) * m
    overlap = -(-int(overlap) // m) * m
    if tile < 2 * m:
        raise ValueError(f"tile must be at least {2 * m} LR pixels")
    if overlap < 0 or 2 * overlap > tile:
        raise ValueError(f"overlap must be between 0 and tile/2 (tile {tile}, overlap {overlap})")
    if n <= tile:
        return [(0, n)]
    step = tile - overlap
    out, a = [], 0
    while True:
        b = a + tile
        if b >= n:
            out.append((a, n))
            break
        out.append((a, b))
        a += step
    if len(out) > 1 and out[-1][1] - out[-1][0] <= overlap:   # cannot happen, kept as a guard
        raise AssertionError("degenerate last tile")
    return out


def _ramp_weights(length: int, ov_hr: int, up: bool, down: bool) -> np.ndarray:
    """1-D blend weights of one tile (HR pixels): raised-cosine ramps over the first
    (``up``) / last (``down``) ``ov_hr`` pixels, 1 elsewhere; a tile's falling ramp
    is exactly 1 minus its neighbour's rising ramp."""
    w = np.ones(length, np.float64)
    if ov_hr > 0:
        t = (np.arange(ov_hr) + 0.5) / ov_hr
        rise = 0.5 - 0.5 * np.cos(np.pi * t)
        if up:
            w[:ov_hr] *= rise
        if down:
            w[length - ov_hr:] *= 1.0 - rise
    return w


def _as_lr_array(lr) -> np.ndarray:
    lr = np.asarray(lr)
    if lr.ndim != 3 or lr.shape[2] != 3 or lr.dtype != np.uint8:
        raise ValueError(f"LR must be an H x W x 3 uint8 array, got {lr.shape} {lr.dtype}")
    return lr


@torch.inference_mode()
def super_resolve_untiled(model: FlowModel, lr: np.ndarray, temperature: float = 0.8, seed: int = 0,
                          n: int = 1) -> list[np.ndarray]:
    """``n`` SR samples of a whole LR image at once (one condition, one sample per decode)."""
    lr = _as_lr_array(lr)
    cond = model.encode_condition(lr_tensor(lr).to(model.device))
    out = []
    for k in range(n):
        lat = model.draw_latents(cond, temperature, int(seed) + k, 1)
        out.append(to_uint8(model.decode(cond, lat)))
    return out


@torch.inference_mode()
def super_resolve(model: FlowModel, lr: np.ndarray, temperature: float = 0.8, seed: int = 0, n: int = 1,
                  tile: int = 128, overlap: int = 16, margin: int = 16, latents: str = "auto",
                  progress=None, stats: dict | None = None) -> list[np.ndarray]:
    """``n`` SR samples (uint8 H x W x 3) of an LR uint8 image, tiled when it is larger
    than ``tile`` LR pixels (``tile <= 0``: never).  See the module docstring.

    ``progress(done, total)`` is called after each tile; ``stats`` (a dict) receives
    ``tiles``, ``latent_backend``, ``latent_mb`` and ``max_window`` (the largest LR
    window encoded, (h, w): what bounds the memory).
    """
    lr = _as_lr_array(lr)
    m = model.lr_multiple
    s = model.scale
    h, w = lr.shape[:2]
    lrp = pad_lr(lr_tensor(lr), m)
    hp, wp = lrp.shape[-2:]
    if tile <= 0 or (hp <= (int(tile) // m) * m and wp <= (int(tile) // m) * m):
        if stats is not None:
            per = sum(c * hh * ww for c, hh, ww in model.latent_shapes(hp * s, wp * s)) * 4
            stats.update(tiles=1, latent_backend="ram", latent_mb=per / 2 ** 20, max_window=(hp, wp))
        res = super_resolve_untiled(model, lr, temperature, seed, n)
        if progress:
            progress(1, 1)
        return res
    margin = -(-int(margin) // m) * m
    ys = plan_tiles(hp, tile, overlap, m)
    xs = plan_tiles(wp, tile, overlap, m)
    ov = -(-int(overlap) // m) * m
    ovh = ov * s
    H, W = h * s, w * s
    Wp = wp * s
    outs = [np.empty((H, W, 3), np.uint8) for _ in range(n)]
    dev, dtype = model.device, model.dtype
    store = LatentStore(model, hp * s, wp * s, temperature, seed, n, backend=latents)
    if stats is not None:
        stats.update(tiles=len(ys) * len(xs), latent_backend=store.backend,
                     latent_mb=store.nbytes / 2 ** 20, max_window=(
                         max(min(hp, b + margin) - max(0, a - margin) for a, b in ys),
                         max(min(wp, d + margin) - max(0, c - margin) for c, d in xs)))
    carry_in = [np.zeros((ovh, Wp, 3), np.float32) for _ in range(n)]
    carry_out = [np.zeros((ovh, Wp, 3), np.float32) for _ in range(n)]
    carry_cols = [None] * n
    total, done = len(ys) * len(xs), 0
    try:
        for j, (a, b) in enumerate(ys):
            up, down = j > 0, j < len(ys) - 1
            wy = _ramp_weights((b - a) * s, ovh, up, down)
            wy0, wy1 = max(0, a - margin), min(hp, b + margin)
            for i, (c, d) in enumerate(xs):
                left, right = i > 0, i < len(xs) - 1
                wx = _ramp_weights((d - c) * s, ovh, left, right)
                wx0, wx1 = max(0, c - margin), min(wp, d + margin)
                cond = model.encode_condition(lrp[..., wy0:wy1, wx0:wx1].to(dev))
                wgt = (wy[:, None] * wx[None, :]).astype(np.float32)[..., None]
                Y0, Y1, X0, X1 = a * s, b * s, c * s, d * s
                ry, rx = (a - wy0) * s, (c - wx0) * s
                for k in range(n):
                    lv = store.crop(k, wy0 * s, wy1 * s, wx0 * s, wx1 * s)
                    lat = Latents([t.to(dev, dtype) for t in lv], store.strides,
                                  ((wy1 - wy0) * s, (wx1 - wx0) * s))
                    x = model.decode(cond, lat)[0, :, ry:ry + Y1 - Y0, rx:rx + X1 - X0]
                    acc = x.float().clamp(0, 1).mul(255.0).permute(1, 2, 0).cpu().numpy()
                    acc *= wgt
                    if left:
                        acc[:, :ovh] += carry_cols[k]
                    if up:
                        c0 = ovh if left else 0
                        acc[:ovh, c0:] += carry_in[k][:, X0 + c0:X1]
                    r_end = acc.shape[0] - (ovh if down else 0)
                    c_end = acc.shape[1] - (ovh if right else 0)
                    if right:
                        carry_cols[k] = acc[:, c_end:].copy()
                    if down:
                        carry_out[k][:, X0:X0 + c_end] = acc[r_end:, :c_end]
                    _emit(outs[k], Y0, X0, acc[:r_end, :c_end])
                del cond
                done += 1
                if progress:
                    progress(done, total)
            carry_in, carry_out = carry_out, carry_in
    finally:
        store.close()
    return outs


def _emit(out: np.ndarray, y0: int, x0: int, block: np.ndarray) -> None:
    """Round a float 0..255 block to uint8 into ``out`` at (y0, x0), clipped to ``out``."""
    H, W = out.shape[:2]
    hh, ww = min(block.shape[0], H - y0), min(block.shape[1], W - x0)
    if hh <= 0 or ww <= 0:
        return
    blk = block[:hh, :ww]
    np.clip(blk, 0.0, 255.0, out=blk)
    blk += 0.5
    out[y0:y0 + hh, x0:x0 + ww] = np.floor(blk).astype(np.uint8)


def seam_stats(a: np.ndarray, b: np.ndarray) -> dict:
    """mean / max / 99.9th percentile |a - b| on the 0..255 scale, and PSNR(a, b)."""
    from ..ops.metrics import psnr

    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {"mean_abs": float(d.mean()), "max_abs": int(d.max()),
            "p999_abs": float(np.percentile(d, 99.9)), "psnr": psnr(a, b)}


# ----------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------

def collect_inputs(inputs) -> list[Path]:
    """Files as given, folders expanded to their image files (sorted, not recursive)."""
    files = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            try:
                files += list_images(p, "input")
            except DataError as e:
                raise SystemExit(f"error: {e}") from None
        elif p.is_file():
            files.append(p)
        else:
            raise SystemExit(f"error: input not found: {p}")
    if not files:
        raise SystemExit("error: no input images")
    return files


def output_name(pattern: str, stem: str, scale: int, temperature: float, seed: int, sample: int) -> str:
    try:
        return pattern.format(stem=stem, scale=scale, temperature=f"{float(temperature):g}",
                              seed=seed, sample=sample)
    except (KeyError, IndexError, ValueError) as e:
        raise SystemExit(f"error: bad --out-pattern {pattern!r} ({type(e).__name__}: {e}); "
                         "fields: {stem} {scale} {temperature} {seed} {sample}") from None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m flow.sr",
                                 description="Super-resolve image files/folders with an SRFlow model.")
    ap.add_argument("inputs", nargs="+", help="image files or folders")
    ap.add_argument("--model", required=True, help=".safetensors (ours) or official .pth")
    ap.add_argument("--config", default=None, help="official YAML or preset name (for .pth files)")
    ap.add_argument("--scale", type=int, default=None, help="check the model's scale")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--samples", type=int, default=1, help="samples per image; sample k uses seed + k")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default="sr_results")
    ap.add_argument("--out-pattern", default=DEFAULT_PATTERN,
                    help="output file name; fields {stem} {scale} {temperature} {seed} (= seed + k) {sample} (= k)")
    ap.add_argument("--tile", type=int, default=128, help="tile size in LR pixels (0: never tile)")
    ap.add_argument("--overlap", type=int, default=16, help="tile overlap (blend zone), LR pixels")
    ap.add_argument("--margin", type=int, default=16, help="extra context around each tile, LR pixels")
    ap.add_argument("--latents", choices=("auto", "ram", "disk"), default="auto",
                    help="where the whole-image latents live (auto: disk above 256 MiB)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--stats-json", default=None, help="write per-file timing/memory stats here (JSON lines)")
    return ap


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    if a.samples < 1:
        raise SystemExit("error: --samples must be >= 1")
    if a.temperature < 0:
        raise SystemExit("error: --temperature must be >= 0")
    if a.margin < 0:
        raise SystemExit("error: --margin must be >= 0")
    if a.tile > 0:
        try:
            plan_tiles(10 ** 6, a.tile, a.overlap, 2)
        except ValueError as e:
            raise SystemExit(f"error: bad tiling (--tile {a.tile} --overlap {a.overlap}): {e}") from None
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    files = collect_inputs(a.inputs)
    from ..models.checkpoint import load_model
    from ..ops.images import read_rgb

    try:
        model = load_model(a.model, config=a.config, device=a.device)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        raise SystemExit(f"error: cannot load model: {e}") from None
    s = model.scale
    if a.scale is not None and a.scale != s:
        raise SystemExit(f"error: --scale {a.scale} but the model is {s}x")
    out_dir = Path(a.out_dir)
    plan, seen = [], {}
    for f in files:
        names = [output_name(a.out_pattern, f.stem, s, a.temperature, a.seed + k, k)
                 for k in range(a.samples)]
        for nm in names:
            if nm in seen:
                raise SystemExit(f"error: output name {nm!r} is produced twice ({seen[nm]} and {f}); "
                                 "add {stem}/{seed}/{sample} to --out-pattern")
            seen[nm] = f
        plan.append((f, names))
    out_dir.mkdir(parents=True, exist_ok=True)
    from PIL import Image
    from tqdm import tqdm

    bar = tqdm(total=len(files), unit="img", disable=a.quiet, file=sys.stderr)
    for f, names in plan:
        try:
            lr = read_rgb(f)
        except DataError as e:
            raise SystemExit(f"error: {e}") from None
        if min(lr.shape[:2]) < 2:
            raise SystemExit(f"error: {f} is too small ({lr.shape[1]}x{lr.shape[0]})")
        st: dict = {}
        t0 = time.perf_counter()
        srs = super_resolve(model, lr, a.temperature, a.seed, a.samples, tile=a.tile, overlap=a.overlap,
                            margin=a.margin, latents=a.latents, stats=st)
        dt = time.perf_counter() - t0
        for img, nm in zip(srs, names):
            Image.fromarray(img).save(out_dir / nm)
        bar.update(1)
        if a.stats_json:
            import json

            rec = {"file": str(f), "lr": [lr.shape[0], lr.shape[1]], "seconds": dt, "samples": a.samples,
                   "tile": a.tile, "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads(), **st}
            with open(a.stats_json, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
        if not a.quiet:
            bar.write(f"{f.name}: {lr.shape[1]}x{lr.shape[0]} -> {lr.shape[1] * s}x{lr.shape[0] * s}, "
                      f"{st.get('tiles', 1)} tile(s), {dt:.2f} s, peak RSS {peak_rss_mb():.0f} MiB "
                      f"-> {out_dir / names[0]}" + (f" (+{len(names) - 1})" if len(names) > 1 else ""))
    bar.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
