"""Evaluation metrics (written from the project's evaluation spec).

Conventions: images are uint8 RGB HxWx3 unless stated; SR sample stacks are
K×H×W×3 (array or list).  Every docstring names the exact variant.
Pure numpy except :func:`ssim` (skimage) and :class:`LpipsMetric` (torch/lpips,
imported lazily and strictly offline).
"""
from __future__ import annotations

import math
import os
import warnings
from typing import Tuple

import numpy as np

from .imresize import imresize

__all__ = [
    "psnr", "ssim", "rgb_to_y", "psnr_y", "lr_psnr", "ntire_crop",
    "ntire_lr_psnr", "diversity_score", "mse_maps", "mse_diversity",
    "pixel_std_diversity", "ensure_torchvision_importable", "LpipsMetric",
    "ALEXNET_CHECKPOINT",
]

ALEXNET_CHECKPOINT = "alexnet-owt-7be5be79.pth"


def _stack(samples) -> np.ndarray:
    arr = np.asarray(samples) if not isinstance(samples, (list, tuple)) \
        else np.stack([np.asarray(s) for s in samples])
    if arr.ndim < 3:
        raise ValueError("samples must be K×H×W[×C]")
    return arr


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB over all pixels/channels (RGB, no shave, no Y).

    Same as ``skimage.metrics.peak_signal_noise_ratio`` for uint8 input;
    ``inf`` for identical images.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * math.log10(data_range ** 2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM = skimage ``structural_similarity(a, b, channel_axis=-1)`` with
    defaults (7×7 uniform window; data range from the uint8 dtype).
    RGB (per-channel mean), no shave.  Grey HxW inputs use no channel axis."""
    from skimage.metrics import structural_similarity

    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    if a.ndim == 2:
        return float(structural_similarity(a, b))
    return float(structural_similarity(a, b, channel_axis=-1))


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma as MATLAB ``rgb2ycbcr``, float64 on the 0-255 scale,
    *not* rounded: ``Y = 16 + (65.481 R + 128.553 G + 24.966 B)`` with R,G,B
    in [0, 1] (i.e. uint8/255)."""
    x = np.asarray(img, dtype=np.float64) / 255.0
    return 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]


def psnr_y(a: np.ndarray, b: np.ndarray, shave: int = 0) -> float:
    """Y-channel PSNR (BT.601 float Y from :func:`rgb_to_y`, data range 255),
    after removing ``shave`` pixels from every border.  Use ``shave = scale``
    for the usual "Y, s-pixel border" SR-literature variant."""
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    if shave > 0:
        ya = ya[shave:-shave, shave:-shave]
        yb = yb[shave:-shave, shave:-shave]
    return psnr(ya, yb, 255.0)


def _as_uint8(img: np.ndarray, name: str) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    if np.issubdtype(img.dtype, np.integer):
        return np.clip(img, 0, 255).astype(np.uint8)
    raise TypeError(f"{name} must be a uint8 image (got {img.dtype})")


def lr_psnr(sr: np.ndarray, lr: np.ndarray, scale: float) -> float:
    """SRFlow "LRC PSNR": ``PSNR(lr, imresize(sr, 1/scale))`` with the MATLAB
    bicubic on uint8 (per-pass rounding), RGB, no shave.  ``inf`` when the SR
    is exactly LR-consistent."""
    down = imresize(_as_uint8(sr, "sr"), 1.0 / scale)
    lr = _as_uint8(lr, "lr")
    if down.shape != lr.shape:
        raise ValueError(f"D(sr) has shape {down.shape}, lr has {lr.shape}")
    return psnr(lr, down)


def ntire_crop(img: np.ndarray, multiple: int = 8) -> np.ndarray:
    """NTIRE pre-processing of the GT: ``img[:(h//m)*m, :(w//m)*m]``."""
    h, w = img.shape[:2]
    return img[: (h // multiple) * multiple, : (w // multiple) * multiple]


def ntire_lr_psnr(samples, gt: np.ndarray, scale: float) -> Tuple[float, float]:
    """NTIRE LR-PSNR: per sample ``PSNR(D_s(x̂_k), D_s(x))`` (uint8 RGB, no
    shave).  Samples are cropped to the GT size.  Returns ``(mean, worst)``;
    an exact match is ``inf`` and makes the mean ``inf`` (not capped)."""
    gt = _as_uint8(gt, "gt")
    h, w = gt.shape[:2]
    d_gt = imresize(gt, 1.0 / scale)
    vals = [psnr(imresize(_as_uint8(s, "sample")[:h, :w], 1.0 / scale), d_gt)
            for s in _stack(samples)]
    if not vals:
        raise ValueError("no samples")
    return float(np.mean(vals)), float(np.min(vals))


def diversity_score(maps) -> float:
    """NTIRE diversity score from per-sample spatial distance maps ℓ_k(p)
    (K×H×W): G = min_k mean_p ℓ_k, Lb = mean_p min_k ℓ_k,
    score = 100·(G − Lb)/G; 0.0 when G == 0."""
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim != 3:
        raise ValueError("maps must be K×H×W")
    g = float(np.min(m.reshape(m.shape[0], -1).mean(axis=1)))
    lb = float(np.mean(np.min(m, axis=0)))
    if g == 0.0:
        return 0.0
    return 100.0 * (g - lb) / g


def _box_full(m: np.ndarray, k: int) -> np.ndarray:
    """2-D 'full' convolution of an H×W map with a k×k box of 1/k²."""
    from numpy.lib.stride_tricks import sliding_window_view

    p = np.pad(m, k - 1)
    p = sliding_window_view(p, k, axis=0).sum(axis=-1)
    p = sliding_window_view(p, k, axis=1).sum(axis=-1)
    return p / float(k * k)


def mse_maps(samples, gt: np.ndarray, box: int = 16) -> np.ndarray:
    """NTIRE 2022 MSE maps: per sample, the squared error against GT averaged
    over RGB, with images as float in [0, 1] (uint8/255), convolved in 'full'
    mode with a 16×16 box of 1/256.  Returns K×(H+15)×(W+15).  (The diversity
    score built on it is invariant to the intensity scale.)"""
    gt = np.asarray(gt, dtype=np.float64) / 255.0
    h, w = gt.shape[:2]
    out = []
    for s in _stack(samples):
        d = np.asarray(s, dtype=np.float64)[:h, :w] / 255.0 - gt
        se = d * d
        if se.ndim == 3:
            se = se.mean(axis=-1)
        out.append(_box_full(se, box))
    return np.stack(out)


def mse_diversity(samples, gt: np.ndarray) -> float:
    """NTIRE 2022 MSE diversity score: ``diversity_score(mse_maps(...))``."""
    return diversity_score(mse_maps(samples, gt))


def pixel_std_diversity(samples) -> float:
    """SRFlow/HCFlow σ diversity: mean over pixels and channels of the
    per-pixel population std (ddof=0) across the K samples, 0–255 scale."""
    arr = _stack(samples).astype(np.float64)
    return float(np.mean(np.std(arr, axis=0, ddof=0)))


# --------------------------------------------------------------------- LPIPS

_TV_OPS_LIB = None  # keeps the fallback torchvision op-schema library alive


def ensure_torchvision_importable() -> str:
    """Make ``import torchvision`` work next to CPU torch (registry torchvision
    is a CUDA build whose compiled ops fail to load).  Must run before the
    first torchvision import.  Returns how it was handled."""
    global _TV_OPS_LIB
    import sys
    import importlib.util

    if "torchvision" in sys.modules:
        return "already imported"
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return "torchvision not installed"
    import torch

    so = None
    for loc in spec.submodule_search_locations:
        for name in os.listdir(loc):
            if name.startswith("_C") and name.endswith(".so"):
                so = os.path.join(loc, name)
                break
    if so is not None:
        try:
            torch.ops.load_library(so)
            return "loaded _C"
        except (OSError, RuntimeError):
            pass
    if _TV_OPS_LIB is None:
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TV_OPS_LIB = lib
    return "defined op schemas"


class LpipsMetric:
    """LPIPS v0.1 with the AlexNet backbone (``spatial=True``), offline only.

    Available only when ``<torch.hub.get_dir()>/checkpoints/alexnet-owt-7be5be79.pth``
    exists; nothing is ever downloaded and a random backbone is never used.
    Inputs uint8 RGB, mapped to ``2·x/255 − 1``.  Check ``available``/``reason``.
    """

    def __init__(self, device: str = "cpu", batch: int = 4):
        self.available = False
        self.reason = ""
        self.device = device
        self.batch = int(batch)
        self._model = None
        try:
            import torch
        except Exception as exc:  # pragma: no cover - torch is a hard dep
            self.reason = f"torch unavailable: {exc}"
            return
        ckpt = os.path.join(torch.hub.get_dir(), "checkpoints", ALEXNET_CHECKPOINT)
        if not os.path.isfile(ckpt):
            self.reason = (f"AlexNet ImageNet weights not found at {ckpt}; "
                           "LPIPS unavailable (no download attempted)")
            return
        orig = torch.hub.download_url_to_file

        def _no_download(*args, **kwargs):
            raise RuntimeError("download blocked: LPIPS runs offline only")

        try:
            ensure_torchvision_importable()
            import lpips

            torch.hub.download_url_to_file = _no_download
            with warnings.catch_warnings():  # torchvision 'pretrained=' deprecation
                warnings.simplefilter("ignore", UserWarning)
                model = lpips.LPIPS(net="alex", version="0.1", spatial=True,
                                    pretrained=True, pnet_rand=False, verbose=False)
        except Exception as exc:
            self.reason = f"LPIPS failed to build offline: {type(exc).__name__}: {exc}"
            return
        finally:
            torch.hub.download_url_to_file = orig
        self._model = model.eval().to(device)
        for p in self._model.parameters():
            p.requires_grad_(False)
        self.available = True
        self.reason = f"LPIPS alex v0.1 (weights {ckpt})"

    def _tensor(self, arr: np.ndarray):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        x = x.permute(0, 3, 1, 2) / 255.0 * 2.0 - 1.0
        return x.to(self.device)

    def spatial_maps(self, samples, gt: np.ndarray) -> np.ndarray:
        """Spatial LPIPS maps ℓ_k(p), K×H×W float64 (each layer's map
        upsampled bilinearly to H×W and summed).  Samples cropped to GT size."""
        if not self.available:
            raise RuntimeError(f"LPIPS unavailable: {self.reason}")
        import torch

        gt = np.asarray(gt)
        h, w = gt.shape[:2]
        arr = _stack(samples)[:, :h, :w]
        g = self._tensor(gt[None])
        out = []
        with torch.no_grad():
            for i in range(0, arr.shape[0], self.batch):
                x = self._tensor(arr[i:i + self.batch])
                d = self._model(x, g.expand(x.shape[0], -1, -1, -1))
                out.append(d[:, 0].double().cpu().numpy())
        return np.concatenate(out)

    def mean(self, samples, gt: np.ndarray) -> float:
        """LPIPS_mean = mean_k mean_p ℓ_k(p) (from the spatial maps)."""
        return float(np.mean(self.spatial_maps(samples, gt)))
