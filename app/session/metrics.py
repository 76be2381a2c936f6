"""The session's image metrics: exact and fast versions of :mod:`flow.ops.metrics`' PSNR
and SSIM for uint8 images, and the SSIM map kept between edits so that a local edit only
recomputes the part of the map it can change."""
from __future__ import annotations

import math

import numpy as np
import torch

from flow.ops.metrics import lr_psnr, ssim

from app.limits import PSNR_CAP


def cap(v: float) -> float:
    """A PSNR capped at :data:`app.limits.PSNR_CAP`."""
    return float(min(v, PSNR_CAP))


def _box_mean(t: torch.Tensor, k: int = 7) -> torch.Tensor:
    """k x k box mean of (..., H, W), 'valid' positions only, via cumulative sums."""
    c = torch.nn.functional.pad(t.cumsum(-2), (0, 0, 1, 0))
    t = c[..., k:, :] - c[..., :-k, :]
    c = torch.nn.functional.pad(t.cumsum(-1), (1, 0))
    return (c[..., k:] - c[..., :-k]) / (k * k)


def ssim_map(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """The SSIM map of :func:`flow.ops.metrics.ssim` (skimage defaults for uint8 RGB: 7x7
    uniform window, sample covariance, data range 255) at its 'valid' positions,
    (3, H-6, W-6) float64 -- exactly the part skimage averages -- computed with
    cumulative-sum box filters."""
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).double()
    y = torch.from_numpy(np.ascontiguousarray(b)).permute(2, 0, 1).double()
    ux, uy, uxx, uyy, uxy = _box_mean(torch.stack([x, y, x * x, y * y, x * y]))
    cn = 49.0 / 48.0
    vx, vy, vxy = cn * (uxx - ux * ux), cn * (uyy - uy * uy), cn * (uxy - ux * uy)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def fast_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`flow.ops.metrics.ssim` via :func:`ssim_map` (same value to ~1e-12, faster)."""
    if min(a.shape[:2]) < 7:
        return float(ssim(a, b))
    return float(ssim_map(a, b).mean())


def fast_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`flow.ops.metrics.psnr` of two uint8 images with exact integer arithmetic."""
    d = a.astype(np.int32) - b.astype(np.int32)
    d = d.ravel()
    sse = int(np.dot(d.astype(np.int64), d.astype(np.int64)))
    if sse == 0:
        return float("inf")
    return float(10.0 * math.log10(255.0 ** 2 * d.size / sse))


class ImageMetrics:
    """Metrics of a session's results against its LR (and HR ground truth, when known).

    Keeps the SSIM map of the last image: when the next image differs from it only
    inside a box, only the affected part of the map is recomputed."""

    def __init__(self):
        self._ssim_cache = None

    def __call__(self, img: np.ndarray, lr: np.ndarray, scale: int, hr: np.ndarray | None,
                 raw_img: np.ndarray | None = None, box=None, prev=None) -> dict:
        """``lr_psnr`` (and ``lr_psnr_raw`` of ``raw_img``, the image before the LR
        projection), plus ``psnr``/``ssim`` when ``hr`` has the image's size.  ``box``:
        ``img`` differs from ``prev`` only inside it (None: anywhere)."""
        m = {"lr_psnr": cap(lr_psnr(img, lr, scale))}
        if raw_img is not None:
            m["lr_psnr_raw"] = cap(lr_psnr(raw_img, lr, scale))
        if hr is not None and hr.shape == img.shape:
            m["psnr"] = cap(fast_psnr(img, hr))
            m["ssim"] = self.ssim(img, hr, box, prev)
        return m

    def ssim(self, img: np.ndarray, hr: np.ndarray, box, prev) -> float:
        """SSIM vs ``hr``; when ``img`` differs from ``prev`` only inside ``box`` and the
        SSIM map of ``prev`` is cached, only the affected part of the map is redone."""
        H, W = img.shape[:2]
        if min(H, W) < 7:
            return float(ssim(img, hr))
        c = self._ssim_cache
        if box is not None and c is not None and prev is not None and c[0] is prev and c[1] is hr:
            y0, y1, x0, x1 = box
            smap = c[2]
            if y1 > y0 and x1 > x0:
                ry0, ry1 = max(0, y0 - 6), min(H - 6, y1)        # map rows whose 7x7 window sees the box
                rx0, rx1 = max(0, x0 - 6), min(W - 6, x1)
                smap = smap.clone()
                smap[:, ry0:ry1, rx0:rx1] = ssim_map(img[ry0:ry1 + 6, rx0:rx1 + 6], hr[ry0:ry1 + 6, rx0:rx1 + 6])
        else:
            smap = ssim_map(img, hr)
        self._ssim_cache = (img, hr, smap)
        return float(smap.mean())
