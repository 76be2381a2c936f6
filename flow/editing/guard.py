"""The non-finite guard of every decode: pixels that are NaN/Inf or explode are retried
with the latents under them at a lower temperature, then replaced by a fallback image."""
from __future__ import annotations

import torch

from ..models.protocol import Latents
from .masks import level_masks

#: Decoded values (in [0, 1] image units) beyond this magnitude count as exploding.
BOUND = 10.0


def bad_pixels(x: torch.Tensor, bound: float = BOUND) -> torch.Tensor:
    """(N, H, W) True where any channel is NaN/Inf or beyond +-bound."""
    return (~torch.isfinite(x) | (x.abs() > bound)).any(dim=1)


def guard_decode(decode, lat: Latents, box, fallback: torch.Tensor | None = None, retries: int = 3,
                 factor: float = 0.5, bound: float = BOUND):
    """Decode with the non-finite guard.

    ``decode(lat)`` returns the float image of the padded-HR ``box``.  Pixels that
    are NaN/Inf or beyond ``bound`` trigger up to ``retries`` retries in which the
    latents whose footprints touch them (dilated by one position) are multiplied
    by ``factor`` -- the same draws at a ``factor`` times lower temperature.  What
    is still bad afterwards is replaced by ``fallback`` (an image of the box, e.g.
    the bicubic upscaling of the LR; mid-grey when None), and everything is
    clamped to +-bound.  Returns ``(image, latents, warnings)``; the latents are
    the ones actually decoded, so the session state stays consistent.
    """
    y0, y1, x0, x1 = box
    x = decode(lat)
    warnings: list[str] = []
    bad = bad_pixels(x, bound)
    if not bool(bad.any()):
        return x, lat, warnings
    first = int(bad.sum())
    strides = list(lat.strides)
    shapes = [tuple(t.shape[-2:]) for t in lat.levels]
    Hp, Wp = shapes[0][0] * strides[0], shapes[0][1] * strides[0]
    tries = 0
    while bool(bad.any()) and tries < retries:
        tries += 1
        levels = [t.clone() for t in lat.levels]
        for b in range(x.shape[0]):
            if not bool(bad[b].any()):
                continue
            full = torch.zeros(Hp, Wp, dtype=torch.bool)
            full[y0:y1, x0:x1] = bad[b].cpu()
            for t, m in zip(levels, level_masks(full, strides, shapes, dilation=1)):
                m = m.to(t.device)
                t[b][:, m] = t[b][:, m] * factor
        lat = Latents(levels, strides, tuple(lat.hr_size))
        x = decode(lat)
        bad = bad_pixels(x, bound)
    left = int(bad.sum())
    msg = (f"decode produced {first} non-finite or exploding pixel(s); "
           f"retried the affected latents at {factor:g}x temperature {tries} time(s)")
    if left:
        fb = fallback if fallback is not None else torch.full_like(x, 0.5)
        fb = fb.to(x.device, x.dtype).expand_as(x)
        x = torch.where(bad[:, None], fb, torch.nan_to_num(x, nan=0.0).clamp(-bound, bound))
        msg += f"; {left} pixel(s) still bad were replaced by the bicubic upscaling of the LR"
    else:
        msg += " (fixed)"
    warnings.append(msg)
    return x, lat, warnings


