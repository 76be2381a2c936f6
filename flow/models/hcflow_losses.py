"""HCFlow's likelihood term and training objectives.

* :func:`dirac_lr_logp`: the official "Dirac-LR" term, log N(q(y); lr, e^-6) with
  q the 8-bit quantisation (straight-through gradient);
* :func:`sr_loss`: the SR objective, ``weight_nll`` x the official NLL + ``weight_l1``
  x L1 of the tau = 0 decode (HCFlow+);
* :func:`rescaling_loss`: the rescaling objective, LR L2 towards bicubic + latent L2 +
  HR L1 of the reconstruction from the straight-through 8-bit flow LR.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..ops.images import quantize_8bit

#: the Dirac-LR likelihood's fixed log-std
DIRAC_LOGSTD = -6.0
_LOG2PI = math.log(2 * math.pi)


def dirac_lr_logp(y: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """log N(round(255 clamp(y)) / 255; lr, e^-6) summed per sample, with a straight-through
    gradient through the rounding (the official "Dirac-LR" term)."""
    d = quantize_8bit(y, straight_through=True) - lr
    return (-DIRAC_LOGSTD - 0.5 * _LOG2PI - 0.5 * math.exp(-2 * DIRAC_LOGSTD) * d ** 2).sum(dim=(1, 2, 3))


def sr_loss(model, hr, lr, quant: int | None = None, weight_l1: float = 0.0, l1_batch: int = 0,
            generator=None, weight_nll: float = 1.0):
    """SR training objective ``(loss, nll, l1)``: ``weight_nll`` x the official NLL
    (bits per HR pixel, uniform dequantisation, Dirac-LR term) + ``weight_l1`` x L1 of
    the tau = 0 decode (HCFlow+), on the first ``l1_batch`` images (all when 0)."""
    nll = model.nll(hr, lr, dequantize=True, quant=quant, generator=generator).official_bpp.mean()
    loss, l1 = weight_nll * nll, None
    if weight_l1 > 0:
        n = hr.shape[0] if l1_batch <= 0 else min(l1_batch, hr.shape[0])
        cond = model.encode_condition(lr[:n], cache=False)
        sr = model.decode(cond, model.draw_latents(cond, 0.0, 0, n)).clamp(0, 1)
        l1 = F.l1_loss(sr, hr[:n])
        loss = loss + weight_l1 * l1
    return loss, nll, l1


def rescaling_loss(model, hr, lr_bicubic, w_lr: float = 0.05, w_z: float = 1e-5, w_hr: float = 1.0,
                   tau: float = 1.0, generator=None):
    """Rescaling objective ``(loss, parts)``: LR L2 towards bicubic (x0.05), latent L2
    (x1e-5) and HR L1 of the reconstruction from the straight-through 8-bit
    quantised flow LR at ``tau`` (x1; its latents seeded from ``generator``)."""
    out = model.encode_levels(hr)
    y = out["y"]
    l_lr = F.mse_loss(y.clamp(0, 1), lr_bicubic)
    l_z = torch.cat([e.flatten() for e in out["eps"]]).pow(2).mean()
    yq = quantize_8bit(y, straight_through=True)
    cond = model.encode_condition(yq)
    lat = model.draw_latents(cond, tau, 0 if generator is None else int(torch.randint(
        0, 2 ** 31 - 1, (1,), generator=generator)), yq.shape[0])
    rec = model.decode(cond, lat).clamp(0, 1)
    l_hr = F.l1_loss(rec, hr)
    parts = {"lr_l2": l_lr, "z_l2": l_z, "hr_l1": l_hr}
    # every term counts, a non-finite one too, so the trainer's skip-bad-batch guard sees it
    loss = w_lr * l_lr + w_z * l_z + w_hr * l_hr
    return loss, parts
