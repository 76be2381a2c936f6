"""Side-by-side table of SR methods on the held-out 256² crops (the model cards' protocol).

    .venv/bin/python scripts/compare_models.py \
        --rrdb "Real-ESRGAN x4plus (imported)=runs/realesrgan_x4plus_rrdb23.safetensors" \
        --rrdb "our L1 RRDB=runs/studio_plus_4x/rrdb.safetensors" \
        --flow "studio_4x=assets/studio_4x.safetensors" \
        --flow "studio_plus_4x=assets/studio_plus_4x.safetensors" --json out.json

Columns: PSNR at tau = 0 (an RRDB's own SR image; bicubic for the bicubic row), LR-PSNR at
tau = 0.9 (NTIRE: PSNR(D(sr), D(gt)), mean of 5 samples), pixel-std diversity at tau = 0.9,
and the time per sample at a 128² LR (median of 5, warm; for a flow the further sample with a
cached condition and the first sample, encoder included).  RRDB-only files are the
``RRDB.*`` safetensors written by ``python -m flow.ncnn`` (ESRGAN tail) or by ``--extract``
(``--extract CKPT OUT`` writes the RRDB of a training checkpoint or model file).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from flow import load_model  # noqa: E402
from flow.data import HELDOUT, heldout_images, make_lr, to_tensor  # noqa: E402
from flow.models.rrdb import RRDBNet  # noqa: E402
from flow.ops.imresize import imresize  # noqa: E402
from flow.ops.metrics import ntire_lr_psnr, psnr  # noqa: E402
from model_card import measure, timing, to_u8  # noqa: E402


def load_rrdb(path: str) -> RRDBNet:
    """An RRDBNet from an ``RRDB.*`` safetensors file (shape read from the keys; ESRGAN tail
    unless the file's metadata says otherwise)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    sd = {k[5:]: v for k, v in load_file(path).items() if k.startswith("RRDB.")}
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    nb = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("RRDB_trunk."))
    nf, gc = sd["conv_first.weight"].shape[0], sd["RRDB_trunk.0.RDB1.conv1.weight"].shape[0]
    net = RRDBNet(nf=nf, nb=nb, gc=gc, scale=4, tail=meta.get("tail", "esrgan"))
    net.load_state_dict(sd)
    return net.eval()


@torch.inference_mode()
def measure_rrdb(net: RRDBNet, images: dict) -> dict:
    rows = []
    for hr in images.values():
        lr = make_lr(hr, 4)
        sr = to_u8(net(to_tensor(lr)[None]).clamp(0, 1)[0])
        rows.append({"psnr_t0": psnr(sr, hr), "psnr_bicubic": psnr(imresize(lr, 4.0), hr),
                     "lr_psnr_t09_mean": ntire_lr_psnr([sr], hr, 4)[0], "pixel_std_t09": 0.0})
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    mean["psnr_gain_t0"] = mean["psnr_t0"] - mean["psnr_bicubic"]
    lr = torch.rand(1, 3, 128, 128)
    net(lr)
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        net(lr)
        ts.append(time.perf_counter() - t0)
    mean["sample_s"] = float(np.median(ts))
    return mean


def extract(src: str, out: str) -> None:
    """Write the RRDB of a training checkpoint (``ckpt_*.pt``) or one of our model files."""
    from safetensors.torch import save_file

    if src.endswith(".pt"):
        st = torch.load(src, map_location="cpu", weights_only=True)
        sd, cfg = st["model"], json.loads(st["config"])["model"]
        tail = cfg["rrdb"].get("tail", "esrgan")
    else:
        m = load_model(src, device="cpu")
        sd, tail = m.state_dict(), m.cfg.rrdb.tail
    rr = {k: v.contiguous() for k, v in sd.items() if k.startswith("RRDB.")}
    save_file(rr, out, metadata={"source": Path(src).name, "tail": tail})
    print(f"wrote {out}: {len(rr)} tensors (tail {tail})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rrdb", action="append", default=[], help="NAME=RRDB-only .safetensors")
    ap.add_argument("--flow", action="append", default=[], help="NAME=model file")
    ap.add_argument("--json", default=None)
    ap.add_argument("--extract", nargs=2, metavar=("SRC", "OUT"))
    a = ap.parse_args(argv)
    if a.extract:
        extract(*a.extract)
        return
    images = heldout_images(HELDOUT[:4], crop=256)
    rows = {}
    bics = {name: imresize(make_lr(hr, 4), 4.0) for name, hr in images.items()}
    rows["bicubic"] = {"psnr_t0": float(np.mean([psnr(bics[n], hr) for n, hr in images.items()])),
                       "psnr_gain_t0": 0.0,
                       "lr_psnr_t09_mean": float(np.mean([ntire_lr_psnr([bics[n]], hr, 4)[0]
                                                          for n, hr in images.items()])),
                       "pixel_std_t09": 0.0}
    for spec in a.rrdb:
        name, path = spec.split("=", 1)
        rows[name] = measure_rrdb(load_rrdb(path), images)
    for spec in a.flow:
        name, path = spec.split("=", 1)
        m = load_model(path, device="cpu")
        r = measure(m, images)["mean"]
        t = timing(m)
        r.update(sample_s=t["further_sample_s"], first_sample_s=t["first_sample_s"])
        rows[name] = r
    print("| method | PSNR τ=0 (gain over bicubic) | LR-PSNR τ=0.9 | diversity τ=0.9 | time per sample, 128² LR |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        t = r.get("sample_s")
        ts = "" if t is None else f"{t:.2f} s" + (f" (first {r['first_sample_s']:.2f} s)" if "first_sample_s" in r else "")
        print(f"| {name} | {r['psnr_t0']:.2f} dB ({r['psnr_gain_t0']:+.2f}) | {r['lr_psnr_t09_mean']:.1f} dB | "
              f"{r['pixel_std_t09']:.1f} | {ts} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
