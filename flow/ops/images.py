"""Image helpers shared by every layer: file listing and reading, uint8 <-> float
conversions, and the 8-bit quantisation of float images.

Conventions: a *uint8 image* is an ``H x W x 3`` ``numpy.uint8`` array (RGB); a *float
image* is a tensor in [0, 1], ``(3, H, W)`` or ``(N, 3, H, W)``, or an ``H x W x 3``
float numpy array.  Float -> uint8 always clamps to [0, 1] and rounds half up:
``floor(255 x + 0.5)``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

#: File extensions read as images (lower case).
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """An image file or folder cannot be used (missing, empty, unreadable)."""


def image_files(folder, recursive: bool = False) -> list[Path]:
    """The image files (by extension, :data:`IMAGE_EXTS`) in ``folder``, sorted; with
    ``recursive`` those of every sub-folder too.  No checks: callers word their own errors."""
    p = Path(folder)
    found = p.rglob("*") if recursive else p.iterdir()
    return sorted(f for f in found if f.suffix.lower() in IMAGE_EXTS and f.is_file())


def list_images(folder, what: str = "image", recursive: bool = False) -> list[Path]:
    """:func:`image_files` of a folder that must exist and hold images; :class:`DataError`
    naming the folder (``what``: "training", "GT", ...) otherwise."""
    p = Path(folder)
    if not p.is_dir():
        raise DataError(f"{what} folder does not exist: {p}")
    files = image_files(p, recursive)
    if not files:
        raise DataError(f"{what} folder {p} contains no images ({', '.join(IMAGE_EXTS)})")
    return files


def read_rgb(path) -> np.ndarray:
    """uint8 HxWx3 (grayscale/alpha/16-bit converted); raises :class:`DataError` if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.asarray(im, dtype=np.float64)
                a = np.clip(a / (65535.0 if a.max() > 255 else 255.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
                return np.repeat(a[..., None], 3, axis=2)
            return np.asarray(im.convert("RGB"))
    except Exception as e:  # noqa: BLE001
        raise DataError(f"cannot read image {path}: {e}") from None


def to_tensor(img_uint8: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float (3, H, W) in [0, 1] (a channels-last view of the array)."""
    return torch.from_numpy(np.ascontiguousarray(img_uint8)).permute(2, 0, 1).float().div(255.0)


def lr_tensor(lr: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> contiguous float (1, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.asarray(lr, dtype=np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()


def pad_to_multiple(lr: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad an LR batch (N, C, h, w) at the bottom/right so that both sides are
    multiples of ``multiple``: (padded, (pad bottom, pad right))."""
    h, w = lr.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        if h < 2 or w < 2:
            raise ValueError(f"LR image too small: {h}x{w}")
        lr = F.pad(lr, (0, pw, 0, ph), mode="reflect")
    return lr, (ph, pw)


def to_uint8(x) -> np.ndarray:
    """A float image -> uint8 HxWx3: ``floor(255 clamp(x, 0, 1) + 0.5)``.

    ``x``: a tensor (3, H, W) or (1, 3, H, W) (computed in float32), or an HxWx3 numpy
    float array (computed in its own dtype)."""
    if isinstance(x, torch.Tensor):
        if x.dim() == 4:
            x = x[0]
        return (x.detach().float().clamp(0, 1).mul(255.0).add(0.5).floor()
                .to(torch.uint8).permute(1, 2, 0).cpu().numpy())
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_hwc(t: torch.Tensor) -> np.ndarray:
    """A float tensor (3, H, W) -> float32 HxWx3 numpy (no clamping)."""
    return np.ascontiguousarray(t.detach().float().cpu().permute(1, 2, 0).numpy())


def quantize_8bit(y: torch.Tensor, straight_through: bool = False) -> torch.Tensor:
    """``round(255 clamp(y, 0, 1)) / 255``; with ``straight_through`` the gradient passes
    the rounding unchanged (as for the flow LR in HCFlow's official losses)."""
    yc = y.clamp(0, 1)
    yq = torch.round(yc * 255) / 255
    return yc + (yq - yc).detach() if straight_through else yq
