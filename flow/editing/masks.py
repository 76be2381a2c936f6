"""Level masks: a boolean HR mask -> one boolean map per latent level (the footprint
rule, see :mod:`flow.editing`), their counts and their HR bounding box."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..models.protocol import Latents


def _mask_tensor(mask) -> torch.Tensor:
    if isinstance(mask, torch.Tensor):
        m = mask.detach().cpu()
    else:
        m = torch.from_numpy(np.ascontiguousarray(np.asarray(mask)))
    if m.dim() != 2:
        raise ValueError(f"mask must be a 2-D HxW array, got shape {tuple(m.shape)}")
    return m.bool() if m.dtype != torch.bool else m


def _geometry(lat, shapes=None) -> tuple[list[int], list[tuple[int, int]]]:
    if isinstance(lat, Latents):
        return list(lat.strides), [tuple(t.shape[-2:]) for t in lat.levels]
    if shapes is None:
        raise ValueError("give Latents, or strides together with per-level (h, w) shapes")
    return [int(s) for s in lat], [tuple(int(v) for v in s[-2:]) for s in shapes]


def level_masks(mask_hr, lat, shapes=None, dilation=0) -> list[torch.Tensor]:
    """Per-level boolean masks (h_l, w_l) of a boolean HR mask.

    ``lat``: a :class:`Latents` (strides and shapes are taken from it), or a list
    of strides with ``shapes`` a list of per-level (h, w) (or (C, h, w)).  The mask
    may have the unpadded HR size (it is padded with False to the latents' padded
    size) or the padded size.  ``dilation``: an int or one int per level, in latent
    positions of that level.  Masks are returned on the latents' device.
    """
    strides, hw = _geometry(lat, shapes)
    m = _mask_tensor(mask_hr)
    Hp, Wp = hw[0][0] * strides[0], hw[0][1] * strides[0]
    for (h, w), s in zip(hw, strides):
        if (h * s, w * s) != (Hp, Wp):
            raise ValueError("latent levels do not describe one image size")
    H, W = m.shape
    if H > Hp or W > Wp:
        raise ValueError(f"mask {H}x{W} is larger than the image ({Hp}x{Wp})")
    if isinstance(lat, Latents) and (H, W) not in (tuple(lat.hr_size), (Hp, Wp)):
        raise ValueError(f"mask is {H}x{W} but the image is {lat.hr_size[0]}x{lat.hr_size[1]}")
    mf = torch.zeros(1, 1, Hp, Wp)
    mf[0, 0, :H, :W] = m.float()
    dil = list(dilation) if isinstance(dilation, (list, tuple)) else [int(dilation)] * len(strides)
    if len(dil) != len(strides):
        raise ValueError("give one dilation per level")
    out = []
    dev = lat.levels[0].device if isinstance(lat, Latents) else torch.device("cpu")
    for s, d in zip(strides, dil):
        lm = F.max_pool2d(mf, kernel_size=s, stride=s) if s > 1 else mf
        if d > 0:
            lm = F.max_pool2d(lm, kernel_size=2 * d + 1, stride=1, padding=d)
        out.append((lm[0, 0] > 0).to(dev))
    return out


def count_masked(masks: list[torch.Tensor]) -> tuple[int, int]:
    """(number of latent positions, number of levels with any) in level masks."""
    n = [int(m.sum()) for m in masks]
    return sum(n), sum(1 for v in n if v)


def masks_bbox(masks, strides) -> tuple[int, int, int, int] | None:
    """HR-pixel bounding box (y0, y1, x0, x1) of the footprints of masked latents."""
    box = None
    for m, s in zip(masks, strides):
        if not bool(m.any()):
            continue
        ys = torch.nonzero(m.any(dim=1)).flatten()
        xs = torch.nonzero(m.any(dim=0)).flatten()
        b = (int(ys[0]) * s, (int(ys[-1]) + 1) * s, int(xs[0]) * s, (int(xs[-1]) + 1) * s)
        box = b if box is None else (min(box[0], b[0]), max(box[1], b[1]), min(box[2], b[2]), max(box[3], b[3]))
    return box


