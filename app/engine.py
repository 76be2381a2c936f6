"""Model-level app features that are not an editing session: image rescaling with an
HCFlow rescaling model, and a side-by-side comparison of models on one LR.

No Gradio here; :mod:`app.ui` wraps these functions.  Images are uint8 HxWx3 numpy
arrays; bad arguments raise ``ValueError`` with a message meant for the user; limits
come from :mod:`app.limits`.

* :func:`rescale` -- the rescaling round trip of an HR photo: the flow's own 8-bit LR
  (``model.downscale``), the reconstruction from it (``model.upscale`` at tau 0, i.e.
  ``model.rescale_roundtrip``), and PSNRs against the bicubic route: flow LR vs the
  MATLAB-bicubic LR, reconstruction vs the HR, and -- for comparison -- an SR model
  (e.g. SRFlow) at tau 0 on the bicubic LR vs the HR, and plain bicubic upscaling.
* :func:`compare` -- one sample of each model for the same LR, seed and temperature.
  The seed means the same thing to each model (its own sampler seeded with it), not
  the same noise: SRFlow and HCFlow latents have different shapes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from flow import editing as E
from flow.ops.images import to_tensor, to_uint8
from flow.ops.imresize import imresize, make_lr
from flow.ops.metrics import lr_psnr, psnr, ssim

from .images import check_image
from .limits import MIN_LR_SIDE
from .models import describe
from .session.metrics import cap
from .session.operations import check_seed, check_temperature


def crop_to_multiple(img: np.ndarray, multiple: int) -> tuple[np.ndarray, str | None]:
    """Crop the bottom/right so that both sides are multiples of ``multiple``;
    returns (image, note or None)."""
    H, W = img.shape[:2]
    h, w = H // multiple * multiple, W // multiple * multiple
    if (h, w) == (H, W):
        return img, None
    return (np.ascontiguousarray(img[:h, :w]),
            f"cropped {W}×{H} to {w}×{h} (a multiple of {multiple}; the bottom/right "
            f"{H - h} row(s) and {W - w} column(s) were dropped)")


@torch.no_grad()
def sample_sr(model, lr: np.ndarray, temperature: float = 0.0, seed: int = 0):
    """One SR sample of a uint8 LR: (uint8 image, guard warnings)."""
    cond = model.encode_condition(to_tensor(lr)[None].to(model.device, model.dtype))
    lat = model.draw_latents(cond, float(temperature), int(seed), 1)
    imgs, _, warns = E.Renderer(model, cond, imresize(lr, float(model.scale))).full(lat)
    return to_uint8(imgs[0]), warns


# ----------------------------------------------------------------------------
# rescaling
# ----------------------------------------------------------------------------

@dataclass
class RescaleResult:
    hr: np.ndarray                       # the HR photo actually used (cropped to a multiple of the scale)
    flow_lr: np.ndarray                  # the rescaling model's own 8-bit LR
    bicubic_lr: np.ndarray               # the MATLAB-bicubic LR of ``hr``
    reconstruction: np.ndarray           # flow upscale of ``flow_lr`` at tau 0
    sr_from_bicubic: np.ndarray | None   # the SR model at tau 0 on ``bicubic_lr`` (None: no SR model)
    bicubic_up: np.ndarray               # bicubic upscaling of ``bicubic_lr`` (reference)
    metrics: dict                        # see :func:`rescale`
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    scale: int = 4


@torch.no_grad()
def rescale(rescaler, hr: np.ndarray, sr_model=None, sr_name: str | None = None) -> RescaleResult:
    """Rescaling round trip of an HR photo (see the module docstring).

    ``rescaler``: an HCFlow rescaling model; ``sr_model``: optional SR model of the
    same scale for the bicubic comparison.  The photo is cropped to a multiple of
    the scale (said in ``notes``).  ``metrics`` (dB, capped at 100):

    * ``lr_psnr_flow_vs_bicubic``: flow LR vs MATLAB-bicubic LR;
    * ``psnr_reconstruction`` (and ``ssim_reconstruction``): reconstruction vs HR;
    * ``psnr_sr_from_bicubic`` (and ``ssim_sr_from_bicubic``): SR model at tau 0 on the
      bicubic LR vs HR (absent without ``sr_model``);
    * ``psnr_bicubic_up``: bicubic upscaling of the bicubic LR vs HR.
    """
    t0 = time.perf_counter()
    if rescaler.kind != "rescaling":
        raise ValueError(f"{rescaler.cfg.name} is not a rescaling model (pick an HCFlow rescaling model)")
    s = int(rescaler.scale)
    if sr_model is not None and int(sr_model.scale) != s:
        raise ValueError(f"the comparison SR model is {sr_model.scale}× but the rescaling model is {s}×")
    img = check_image(hr, "the HR photo")
    img, note = crop_to_multiple(img, s)
    notes = [note] if note else []
    if min(img.shape[:2]) < MIN_LR_SIDE * s:
        raise ValueError(f"the HR photo is {hr.shape[1]}×{hr.shape[0]}: at least "
                         f"{MIN_LR_SIDE * s}×{MIN_LR_SIDE * s} pixels are needed for {s}×")
    dev, dtype = rescaler.device, rescaler.dtype
    flow_lr_t, rec_t = rescaler.rescale_roundtrip(to_tensor(img)[None].to(dev, dtype))
    warnings = []
    if not bool(torch.isfinite(rec_t).all()):
        warnings.append("the reconstruction has non-finite pixels (shown as black)")
        rec_t = torch.nan_to_num(rec_t, nan=0.0)
    flow_lr, rec = to_uint8(flow_lr_t[0]), to_uint8(rec_t[0])
    bic_lr = make_lr(img, s)
    bic_up = imresize(bic_lr, float(s))
    metrics = {"lr_psnr_flow_vs_bicubic": cap(psnr(flow_lr, bic_lr)),
               "psnr_reconstruction": cap(psnr(rec, img)), "ssim_reconstruction": float(ssim(rec, img)),
               "psnr_bicubic_up": cap(psnr(bic_up, img)),
               "lr_psnr_reconstruction": cap(lr_psnr(rec, flow_lr, s))}
    sr = None
    if sr_model is not None:
        sr, w = sample_sr(sr_model, bic_lr, 0.0, 0)
        warnings += [f"SR model: {m}" for m in w]
        metrics["psnr_sr_from_bicubic"] = cap(psnr(sr, img))
        metrics["ssim_sr_from_bicubic"] = float(ssim(sr, img))
        if sr_name:
            metrics["sr_model"] = sr_name
    return RescaleResult(img, flow_lr, bic_lr, rec, sr, bic_up, metrics, notes, warnings,
                         time.perf_counter() - t0, s)


# ----------------------------------------------------------------------------
# model comparison
# ----------------------------------------------------------------------------

@dataclass
class CompareItem:
    name: str
    info: object                 # app.models.ModelInfo
    image: np.ndarray            # uint8 SR sample
    metrics: dict                # lr_psnr, and psnr/ssim when the HR is known
    seconds: float
    warnings: list[str] = field(default_factory=list)


def compare(models: dict, lr: np.ndarray, hr: np.ndarray | None = None, temperature: float = 0.8,
            seed: int = 0) -> list[CompareItem]:
    """One sample per model (``{name: model}``, all of the same scale) of the same LR
    with the same seed and temperature, with LR-PSNR (and PSNR/SSIM vs ``hr``)."""
    if not models:
        raise ValueError("choose at least one model to compare")
    lr = check_image(lr, "the LR image")
    if min(lr.shape[:2]) < MIN_LR_SIDE:
        raise ValueError(f"the LR image is {lr.shape[1]}×{lr.shape[0]}: at least {MIN_LR_SIDE} px per side")
    tau, seed = check_temperature(temperature), check_seed(seed)
    scales = {int(m.scale) for m in models.values()}
    if len(scales) != 1:
        raise ValueError("the models to compare must have the same scale, got "
                         + ", ".join(f"{n} {m.scale}×" for n, m in models.items()))
    s = scales.pop()
    if hr is not None:
        hr = check_image(hr, "the HR ground truth")
        if hr.shape[:2] != (lr.shape[0] * s, lr.shape[1] * s):
            hr = None
    out = []
    for name, model in models.items():
        t0 = time.perf_counter()
        img, warns = sample_sr(model, lr, tau, seed)
        m = {"lr_psnr": cap(lr_psnr(img, lr, s))}
        if hr is not None:
            m["psnr"] = cap(psnr(img, hr))
            m["ssim"] = float(ssim(img, hr))
        out.append(CompareItem(name, describe(name, model), img, m, time.perf_counter() - t0, warns))
    return out
