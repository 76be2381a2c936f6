"""Train the small model fixture used by the editing tests.

    OMP_NUM_THREADS=1 .venv/bin/python tests/make_fixture.py [--minutes 12] [--out tests/data/tiny_trained_4x.safetensors]

The architecture is the ``tiny_4x`` preset (about 360k parameters, 1.4 MB as float32
safetensors).  It is trained with :class:`flow.train.Trainer` on random 64x64 HR crops
of the photos in ``data/train`` (``python -m flow.data gather data/train``; the
held-out scikit-image evaluation photos are never used for training): a short L1
pre-training of the RRDB encoder, then NLL training of the flow with an L1 term on
the tau=0 reconstruction, which is what makes the model LR-consistent quickly.

The point of the fixture is not image quality but a model whose latents behave
like a trained SRFlow's: samples are LR-consistent, so that an inconsistent paste
encodes to out-of-distribution latents and latent normalization (harmonization)
measurably raises LR-PSNR.  The script prints those numbers at the end.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from flow.checkpoint import load_model, save_safetensors  # noqa: E402
from flow.config import preset  # noqa: E402
from flow.data import CropSampler, heldout_images, make_lr, to_tensor  # noqa: E402
from flow.metrics import lr_psnr  # noqa: E402
from flow.train import DataConfig, EncoderConfig, OptimConfig, RunConfig, TrainConfig, Trainer  # noqa: E402

DEFAULT_OUT = ROOT / "tests" / "data" / "tiny_trained_4x.safetensors"


def build_config(steps: int, enc_steps: int, run_dir: str) -> TrainConfig:
    return TrainConfig(
        model=preset("tiny_4x"),
        data=DataConfig(train_dirs=[str(ROOT / "data" / "train")], crop=64, batch=8),
        optim=OptimConfig(steps=steps, lr=1e-3, betas=(0.9, 0.99), milestones=[0.6, 0.8, 0.9],
                          gamma=0.5, quant=32, weight_l1=0.5, l1_batch=2, grad_clip=10.0,
                          freeze_encoder_fraction=0.3),
        encoder=EncoderConfig(pretrain_steps=enc_steps, lr=5e-4, batch=8),
        run=RunConfig(dir=run_dir, ckpt_every=10 ** 9, keep=1, val_every=0, log_every=50, seed=0),
    )


def evaluate(path: Path) -> dict:
    """LR-PSNR of samples on held-out crops, and raw-paste vs harmonized LR-PSNR."""
    sys.path.insert(0, str(ROOT))
    from app.session import EditSession

    model = load_model(path, device="cpu")
    ims = heldout_images(("astronaut", "coffee"), crop=128)
    res = {}
    for name, hr in ims.items():
        lr = make_lr(hr, 4)
        cond = model.encode_condition(to_tensor(lr)[None])
        sr = model.sample(cond, temperature=0.8, seed=0)
        sr8 = (sr[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        res[f"{name}_lr_psnr_t08"] = round(lr_psnr(sr8, lr, 4), 2)
    s = EditSession.from_hr(model, ims["astronaut"])
    s.generate(temperature=0.8, seed=0, n=1)
    r = s.transfer(ims["coffee"], (30, 30, 78, 78), (40, 40), (48, 48), mode="local", temperature=0.8, seed=0)
    res["paste_raw_lr_psnr"] = round(r.extra["raw_lr_psnr"], 2)
    res["paste_harmonized_lr_psnr"] = round(r.extra["harmonized_lr_psnr"], 2)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1500, help="flow steps")
    ap.add_argument("--enc-steps", type=int, default=300, help="L1 pre-training steps of the encoder")
    ap.add_argument("--minutes", type=float, default=None, help="stop early after this wall time")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (more than the free cores is very slow)")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--eval-only", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    if not a.eval_only:
        with tempfile.TemporaryDirectory() as run_dir:
            cfg = build_config(a.steps, a.enc_steps, run_dir)
            sampler = CropSampler.from_dirs(cfg.data.train_dirs, cfg.data.crop, cfg.model.scale)
            tr = Trainer(cfg, device="cpu", sampler=sampler)
            t0 = time.time()
            tr.run(max_seconds=a.minutes * 60 if a.minutes else None)
            secs = time.time() - t0
            save_safetensors(tr.model, out, extra={
                "train_step": tr.step, "train_seconds": round(secs, 1), "fixture": "tests/make_fixture.py",
                "train_config": json.dumps(cfg.to_dict(), default=list)})
        print(f"trained {tr.enc_step} encoder + {tr.step} flow steps in {secs:.0f} s -> {out} "
              f"({out.stat().st_size / 1e6:.2f} MB)")
    print(json.dumps(evaluate(out), indent=1))


if __name__ == "__main__":
    main()
