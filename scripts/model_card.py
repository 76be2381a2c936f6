"""Measure a shipped model on the held-out photos and (re)write its model-card files.

    .venv/bin/python scripts/model_card.py [--model assets/studio_4x.safetensors] [--log runs/studio_4x/log.jsonl]
    .venv/bin/python scripts/model_card.py --model assets/hcflow_sr_4x.safetensors \
        --log runs/hcflow_sr_4x/log.jsonl --out assets/model_card_hcflow_sr --tau 0.8
    .venv/bin/python scripts/model_card.py --model assets/hcflow_rescaling_4x.safetensors \
        --log runs/hcflow_rescaling_4x/log.jsonl --out assets/model_card_hcflow_rescaling

Writes OUT/{metrics.json, training_curve.png, samples.png, training_log.csv} (OUT defaults
to assets/model_card); the numbers are then quoted in the MODEL_CARD*.md files.  Metrics
follow flow.ops.metrics (RGB, no shave; LR-PSNR is the NTIRE definition, PSNR(D(sr), D(gt)),
which equals the consistency PSNR(D(sr), LR) here since the LR is D(gt)).  A rescaling
model is measured by its round trip (flow downscale -> 8-bit -> flow upscale at tau 0)
against bicubic downscale -> the shipped SRFlow at tau 0.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flow import load_model  # noqa: E402
from flow.data import HELDOUT, HELDOUT_LICENCES, heldout_images, make_lr, to_tensor  # noqa: E402
from flow.ops.images import quantize_8bit  # noqa: E402
from flow.ops.imresize import imresize  # noqa: E402
from flow.ops.metrics import ntire_lr_psnr, pixel_std_diversity, psnr, ssim  # noqa: E402

OUT = ROOT / "assets" / "model_card"

# The calibration run of the official code (issue #7), for the comparison table.
CALIBRATION = {"psnr_t0": 26.97, "psnr_bicubic": 26.70, "lr_psnr_t09": 35.4, "pixel_std_t09": 4.1,
               "minutes": 50, "steps": 2544}


def to_u8(t: torch.Tensor) -> np.ndarray:
    return (t.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


@torch.inference_mode()
def measure(model, images: dict, n_samples: int = 5, tau: float = 0.9) -> dict:
    s = model.scale
    rows = {}
    for i, (name, hr) in enumerate(images.items()):
        lr = make_lr(hr, s)
        cond = model.encode_condition(to_tensor(lr)[None])
        sr0 = to_u8(model.sample(cond, 0.0, seed=0)[0])
        samples = [to_u8(x) for x in model.sample(cond, tau, seed=100 * i, n=n_samples)]
        bic = imresize(lr, float(s))
        lr_mean, lr_worst = ntire_lr_psnr(samples, hr, s)
        rows[name] = {
            "size": list(hr.shape[:2]),
            "psnr_bicubic": psnr(bic, hr), "ssim_bicubic": ssim(bic, hr),
            "psnr_t0": psnr(sr0, hr), "ssim_t0": ssim(sr0, hr),
            "psnr_t09": float(np.mean([psnr(x, hr) for x in samples])),
            "ssim_t09": float(np.mean([ssim(x, hr) for x in samples])),
            "lr_psnr_t09_mean": lr_mean, "lr_psnr_t09_worst": lr_worst,
            "lr_psnr_t0": ntire_lr_psnr([sr0], hr, s)[0],
            "pixel_std_t09": pixel_std_diversity(np.stack(samples)),
        }
    keys = next(iter(rows.values())).keys() - {"size"}
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in keys}
    mean["psnr_gain_t0"] = mean["psnr_t0"] - mean["psnr_bicubic"]
    return {"per_image": rows, "mean": mean, "n_samples": n_samples, "tau": tau}


@torch.inference_mode()
def timing(model, size=128, repeats=5) -> dict:
    """Median wall time of a first sample (encoder + LR cache + decode) and of a further
    sample, in a warm process (one untimed run first: oneDNN builds its kernels then)."""
    lr = torch.rand(1, 3, size, size)
    model.sample(lr, 0.9, seed=0)
    first, further = [], []
    for k in range(repeats):
        t0 = time.perf_counter()
        cond = model.encode_condition(lr)
        t1 = time.perf_counter()
        model.sample(cond, 0.9, seed=k + 1)
        t2 = time.perf_counter()
        first.append(t2 - t0)
        further.append(t2 - t1)
    return {"lr_size": size, "first_sample_s": float(np.median(first)), "first_sample_range_s": [min(first), max(first)],
            "further_sample_s": float(np.median(further)), "repeats": repeats, "threads": torch.get_num_threads()}


def save_panels(panels, path: Path, **imshow):
    """One row of titled images."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3))
    for ax, (title, im) in zip(axes, panels):
        ax.imshow(im, **imshow)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@torch.inference_mode()
def measure_rescaling(model, sr_model, images: dict) -> dict:
    s = model.scale
    rows = {}
    for name, hr in images.items():
        hr_t = to_tensor(hr)[None]
        lr_flow, rec = model.rescale_roundtrip(hr_t)
        lr_bic = make_lr(hr, s)
        sr_bic = to_u8(sr_model.sample(sr_model.encode_condition(to_tensor(lr_bic)[None]), 0.0, seed=0)[0])
        rows[name] = {
            "size": list(hr.shape[:2]),
            "psnr_rescale": psnr(to_u8(rec[0]), hr), "ssim_rescale": ssim(to_u8(rec[0]), hr),
            "psnr_bicubic_srflow_t0": psnr(sr_bic, hr),
            "psnr_bicubic_up": psnr(imresize(lr_bic, float(s)), hr),
            "psnr_lr_vs_bicubic": psnr(to_u8(lr_flow[0]), lr_bic),
            **true_latent_roundtrip(model, hr_t, hr),
        }
    keys = next(iter(rows.values())).keys() - {"size"}
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in keys}
    mean["gain_over_srflow"] = mean["psnr_rescale"] - mean["psnr_bicubic_srflow_t0"]
    return {"per_image": rows, "mean": mean}


def true_latent_roundtrip(model, hr_t: torch.Tensor, hr: np.ndarray) -> dict:
    """The tau = 0 round trip, but with the encoder's own latents at one level (0 the
    finest): how much of the detail that tau = 0 discards each level holds."""
    out = model.encode_levels(hr_t)
    yq = quantize_8bit(out["y"])
    res = {}
    for l in range(len(out["eps"])):
        lat = [e if i == l else torch.zeros_like(e) for i, e in enumerate(out["eps"])]
        res[f"psnr_rescale_true_latent{l}"] = psnr(to_u8(model.decode(yq, lat).clamp(0, 1)[0]), hr)
    return res


def figure_rescaling(model, hr: np.ndarray, path: Path):
    lr_flow, rec = model.rescale_roundtrip(to_tensor(hr)[None])
    lr_bic = make_lr(hr, model.scale)
    panels = [("bicubic LR", lr_bic), ("flow LR", to_u8(lr_flow[0])), ("bicubic up", imresize(lr_bic, 4.0)),
              ("reconstruction", to_u8(rec[0])), ("ground truth", hr)]
    save_panels(panels, path, interpolation="nearest")


def curve_rescaling(log_path: Path, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [json.loads(l) for l in open(log_path)]
    tr = [r for r in recs if r["kind"] == "train"]
    val = [r for r in recs if r["kind"] == "val"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for k in ("hr_l1", "lr_l2"):
        axes[0].plot([r["step"] for r in tr if k in r], [r[k] for r in tr if k in r], lw=0.6, label=k)
    axes[0].set(title="training losses", xlabel="step", yscale="log")
    axes[0].legend(fontsize=8)
    if val:
        vx = [r["step"] for r in val]
        axes[1].plot(vx, [r["psnr_rescale"] for r in val], "o-", label="round trip")
        axes[1].plot(vx, [r["psnr_bicubic"] for r in val], "--", label="bicubic down/up")
        axes[1].plot(vx, [r["psnr_lr_vs_bicubic"] for r in val], "s-", label="flow LR vs bicubic LR")
        axes[1].legend(fontsize=8)
    axes[1].set(title="validation PSNR (128² crops)", xlabel="step", ylabel="dB")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figure(model, hr: np.ndarray, path: Path, tau: float = 0.9):
    s = model.scale
    lr = make_lr(hr, s)
    with torch.inference_mode():
        cond = model.encode_condition(to_tensor(lr)[None])
        sr0 = to_u8(model.sample(cond, 0.0, seed=0)[0])
        samples = [to_u8(x) for x in model.sample(cond, tau, seed=7, n=3)]
    panels = [("bicubic", imresize(lr, float(s))), ("τ = 0", sr0)] + \
             [(f"τ = {tau} (seed {7 + k})", x) for k, x in enumerate(samples)] + [("ground truth", hr)]
    save_panels(panels, path)


def curve(log_path: Path, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [json.loads(l) for l in open(log_path)]
    tr = [r for r in recs if r["kind"] == "train" and r["stage"] == "flow"]
    enc = [r for r in recs if r["kind"] == "train" and r["stage"] == "encoder"]
    val = [r for r in recs if r["kind"] == "val" and r.get("stage", "flow") == "flow" and "psnr_t0" in r]
    enc_val = [r for r in recs if r["kind"] == "val" and r.get("stage") == "encoder"]
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.6))
    if enc:
        axes[0].plot([r["step"] for r in enc], [r["loss"] for r in enc], lw=0.6)
    axes[0].set(title="encoder L1 pre-training", xlabel="step", ylabel="L1")
    if enc_val:
        ax = axes[0].twinx()
        ax.plot([r["step"] for r in enc_val], [r["rrdb_gain"] for r in enc_val], "o-", color="C3")
        ax.set_ylabel("RRDB gain over bicubic (dB, val)", color="C3")
    if tr:
        x = np.array([r["step"] for r in tr])
        y = np.array([r["loss"] for r in tr])
        k = max(1, len(y) // 50)
        axes[1].plot(x, y, lw=0.3, alpha=0.4)
        axes[1].plot(x[k - 1:], np.convolve(y, np.ones(k) / k, mode="valid"), lw=1.2)
    axes[1].set(title="flow NLL (bits/dim, dequantized)", xlabel="flow step")
    if val:
        vx = [r["step"] for r in val]
        axes[2].plot(vx, [r["psnr_t0"] for r in val], "o-", label="τ=0")
        axes[2].plot(vx, [r["psnr_bicubic"] for r in val], "--", label="bicubic")
        axes[2].axhline(CALIBRATION["psnr_t0"] - CALIBRATION["psnr_bicubic"] + np.mean(
            [r["psnr_bicubic"] for r in val]), color="gray", ls=":", label="official-code calibration gain")
        axes[2].legend(fontsize=8)
        axes[3].plot(vx, [r["lr_psnr_t09"] for r in val], "o-", label="ours τ=0.9")
        axes[3].axhline(CALIBRATION["lr_psnr_t09"], color="gray", ls=":", label="calibration run")
        axes[3].axhline(40, color="red", ls="--", lw=0.8, label="target")
        axes[3].legend(fontsize=8)
    axes[2].set(title="validation PSNR (128² crops)", xlabel="flow step", ylabel="dB")
    axes[3].set(title="validation LR-PSNR", xlabel="flow step", ylabel="dB")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "assets" / "studio_4x.safetensors"))
    ap.add_argument("--log", default=str(ROOT / "runs" / "studio_4x" / "log.jsonl"))
    ap.add_argument("--full", action="store_true", help="also measure the whole held-out photos")
    ap.add_argument("--out", default=str(OUT), help="output folder")
    ap.add_argument("--tau", type=float, default=0.9, help="sampling temperature of the diversity/LR metrics")
    ap.add_argument("--sr-model", default=str(ROOT / "assets" / "studio_4x.safetensors"),
                    help="rescaling only: the SR model of the bicubic baseline")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(a.model, device="cpu")
    meta = model.meta
    res = {"model": Path(a.model).name, "train_step": json.loads(meta.get("train_step", "0")),
           "train_seconds": json.loads(meta.get("train_seconds", "0")),
           "parameters": sum(p.numel() for p in model.parameters()),
           "torch": torch.__version__, "machine": platform.machine()}
    if getattr(model.cfg, "kind", "sr") == "rescaling":
        res["crops256"] = measure_rescaling(model, load_model(a.sr_model, device="cpu"),
                                            heldout_images(HELDOUT[:4], crop=256))
        if a.full:
            res["full"] = measure_rescaling(model, load_model(a.sr_model, device="cpu"),
                                            heldout_images(HELDOUT, crop=None))
        (out / "metrics.json").write_text(json.dumps(res, indent=1))
        figure_rescaling(model, heldout_images(["chelsea"], crop=128)["chelsea"], out / "samples.png")
        if Path(a.log).exists():
            curve_rescaling(Path(a.log), out / "training_curve.png")
        print(json.dumps(res["crops256"]["mean"], indent=1))
        return
    res["crops256"] = measure(model, heldout_images(HELDOUT[:4], crop=256), tau=a.tau)
    res["timing"] = timing(model)
    if a.full:
        res["full"] = measure(model, heldout_images(HELDOUT, crop=None), n_samples=3, tau=a.tau)
    (out / "metrics.json").write_text(json.dumps(res, indent=1))
    figure(model, heldout_images(["chelsea"], crop=128)["chelsea"], out / "samples.png", tau=a.tau)
    if Path(a.log).exists():
        curve(Path(a.log), out / "training_curve.png")
        import csv
        recs = [json.loads(l) for l in open(a.log)]
        cols = ["kind", "stage", "step", "loss", "l1", "lr", "step_time", "elapsed", "psnr_t0", "psnr_bicubic",
                "lr_psnr_t09", "psnr_t09", "nll_bpd", "rrdb_psnr", "rrdb_gain"]
        with open(out / "training_log.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in recs:
                if r["kind"] == "val" or r["step"] % 50 == 0:
                    w.writerow([r.get(c, "") for c in cols])
    print(json.dumps(res["crops256"]["mean"], indent=1))
    print(json.dumps(res["timing"], indent=1))
    if "full" in res:
        print(json.dumps(res["full"]["mean"], indent=1))


if __name__ == "__main__":
    main()
