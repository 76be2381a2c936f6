"""Make the small model fixtures used by the tests.

    OMP_NUM_THREADS=1 .venv/bin/python tests/make_fixture.py [--minutes 12] [--out tests/data/tiny_trained_4x.safetensors]
    OMP_NUM_THREADS=1 .venv/bin/python tests/make_fixture.py --hcflow   # the two HCFlow fixtures (~2 min)

HCFlow fixtures (``--hcflow``): ``tests/data/tiny_hcflow_sr_4x.safetensors`` and
``tests/data/tiny_hcflow_rescaling_4x.safetensors``, HCFlow SR / rescaling models of a
narrowed ``hcflow_tiny_*`` architecture (24-channel RRDBs, about 1.5 MB each).  They
start from deterministic random weights in which every zero-initialised part (prior
heads, coupling outputs, the rescaling DenseBlocks' last convs) and every ActNorm is
perturbed, and are then trained for ``--hcflow-steps`` (200) Adam steps on 32x32 crops
of ``data/train`` (one thread, fixed seeds: the same weights on a rerun): SR with
0.01 x the official NLL + L1 of the tau = 0 decode, rescaling with its own loss.
That is enough for image-like results (SR samples about 27 dB LR-PSNR, the flow LR
about 25 dB from bicubic), which keeps the app and session tests meaningful; they
are not models to use.

The SRFlow fixture (the default):

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

from flow import load_model, save_safetensors  # noqa: E402
from flow import preset  # noqa: E402
from flow.data import CropSampler, heldout_images, make_lr, to_tensor  # noqa: E402
from flow.ops.metrics import lr_psnr  # noqa: E402
from flow.train import DataConfig, EncoderConfig, OptimConfig, RunConfig, TrainConfig, Trainer  # noqa: E402

DEFAULT_OUT = ROOT / "tests" / "data" / "tiny_trained_4x.safetensors"
HCFLOW_OUT = {"sr": ROOT / "tests" / "data" / "tiny_hcflow_sr_4x.safetensors",
              "rescaling": ROOT / "tests" / "data" / "tiny_hcflow_rescaling_4x.safetensors"}


def hcflow_fixture_config(kind: str):
    """The fixtures' architecture: ``hcflow_tiny_{kind}_4x`` with a 24-channel RRDB."""
    import dataclasses

    from flow.models.hcflow_config import HC_PRESETS

    base = HC_PRESETS[f"hcflow_tiny_{kind}_4x"]
    return dataclasses.replace(base, name=f"hcflow_fixture_{kind}_4x", rrdb_nf=24, P=list(base.P),
                               rrdb_nb=list(base.rrdb_nb)).validate()


def train_hcflow_fixture(model, kind: str, steps: int, seed: int = 0):
    """A few hundred Adam steps on 32x32 crops (see the module docstring)."""
    sampler = CropSampler.from_dirs([str(ROOT / "data" / "train")], 32, model.scale)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3, betas=(0.9, 0.99))
    model.train()
    for i in range(steps):
        hr, lr = sampler.batch(8, g)
        if kind == "sr":
            loss, _, _ = model(hr, lr, weight_l1=1.0, weight_nll=0.01)
        else:
            loss, _ = model.rescaling_loss(hr, lr, generator=g)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i % 100 == 0 or i == steps - 1:
            print(f"{kind} step {i}: loss {loss.item():.4f}", flush=True)
    return model.eval()


@torch.no_grad()
def make_hcflow_fixture(kind: str, seed: int = 0):
    """A deterministic, perturbed random HCFlow model (see the module docstring)."""
    from flow.models.randomize import randomize
    from flow.models.hcflow import HCFlow

    torch.manual_seed(seed)
    model = HCFlow(hcflow_fixture_config(kind))
    return randomize(model, seed + 1, weight_std=2e-3).eval()


def write_hcflow_fixtures(steps: int = 200) -> None:
    for seed, (kind, path) in enumerate(HCFLOW_OUT.items()):
        model = make_hcflow_fixture(kind, seed)
        if steps:
            train_hcflow_fixture(model, kind, steps)
        save_safetensors(model, path, extra={"fixture": "tests/make_fixture.py --hcflow", "seed": seed,
                                             "train_steps": steps})
        print(f"{path} ({path.stat().st_size / 1e6:.2f} MB)")


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
    ap.add_argument("--hcflow", action="store_true", help="write the two HCFlow fixtures and stop")
    ap.add_argument("--hcflow-steps", type=int, default=200, help="training steps of each HCFlow fixture")
    a = ap.parse_args(argv)
    if a.hcflow:
        torch.set_num_threads(1)
        write_hcflow_fixtures(a.hcflow_steps)
        return
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
