"""Decoding for an editing session: latents of one LR image -> float HxWx3 images, through
the non-finite guard, as whole images or as edits spliced into the previous image.

An *edit* changes latents only inside level masks.  With a local region decode
(``model.supports_region``) :meth:`Renderer.edit` decodes a window around the changed
footprints (:func:`flow.editing.window.edit_boxes`) and splices its centre into the
previous image.  Just outside the splice box the window decode must agree with the
previous image (seam check, :data:`SEAM_TOLERANCE`); if it does not, the edit reaches
further than the margin (or the window border error does), so the margin doubles and
the window is decoded again (up to twice).  Edits whose window covers most of the
image (:data:`FULL_DECODE_FRACTION`), and every edit of a model without a local decode,
decode the whole image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models.protocol import Condition, Latents
from ..ops.images import to_hwc, to_tensor
from .guard import guard_decode
from .masks import masks_bbox
from .window import DEFAULT_MARGIN, decode_window, edit_boxes

#: Edits whose decode window covers more than this fraction of the image decode it whole.
FULL_DECODE_FRACTION = 0.6
#: Max |window - previous| (in [0, 1] units) tolerated just outside the splice box
#: before the margin is doubled.
SEAM_TOLERANCE = 0.5 / 255


@dataclass
class EditDecode:
    """What :meth:`Renderer.edit` did: the new raw image, the latents actually decoded
    (the guard may have tamed some), guard warnings, a phrase saying how, and ``box``:
    the pixels that may have changed (None: anywhere)."""

    raw: np.ndarray
    latents: Latents
    warnings: list
    how: str
    box: tuple | None


class Renderer:
    """Decodes latents for the condition ``cond`` of one LR image; ``bicubic`` (uint8,
    the LR's bicubic upscaling) replaces what the guard cannot fix."""

    def __init__(self, model, cond: Condition, bicubic: np.ndarray):
        self.model, self.cond, self.bicubic = model, cond, bicubic
        self._fallback = None

    def fallback(self) -> torch.Tensor:
        """Bicubic upscaling of the LR, (1, 3, Hp, Wp) float, edge-padded."""
        if self._fallback is None:
            H, W = self.cond.hr_size
            Hp, Wp = self.cond.padded_hr_size
            b = np.pad(self.bicubic, ((0, Hp - H), (0, Wp - W), (0, 0)), mode="edge")
            self._fallback = to_tensor(b)[None].to(self.model.device, self.model.dtype)
        return self._fallback

    def full(self, lat: Latents):
        """Whole-image decode (with the guard): (list of float32 HxWx3, latents, warnings)."""
        H, W = self.cond.hr_size
        fb = self.fallback()[..., :H, :W]
        x, lat, warns = guard_decode(lambda z: self.model.decode(self.cond, z), lat, (0, H, 0, W), fallback=fb)
        return [to_hwc(x[i]) for i in range(x.shape[0])], lat, warns

    def edit(self, lat: Latents, masks, previous: np.ndarray | None, margin: int = DEFAULT_MARGIN) -> EditDecode:
        """Decode latents that differ from those of ``previous`` (the current raw image)
        only inside ``masks`` (see the module docstring)."""
        bbox = masks_bbox(masks, lat.strides)
        if bbox is None:
            return EditDecode(previous, lat, [], "nothing", (0, 0, 0, 0))
        if not self.model.supports_region:
            imgs, lat, warns = self.full(lat)
            return EditDecode(imgs[0], lat, warns, "full decode: no local decode for this model", None)
        Hp, Wp = self.cond.padded_hr_size
        H, W = self.cond.hr_size
        margin = start = int(margin)
        for attempt in range(3):
            win, splice = edit_boxes(bbox, (Hp, Wp), self.model.total_stride, margin)
            area = (win[1] - win[0]) * (win[3] - win[2])
            if previous is None or area >= FULL_DECODE_FRACTION * Hp * Wp:
                imgs, lat, warns = self.full(lat)
                return EditDecode(imgs[0], lat, warns, "full decode", None)
            y0, y1, x0, x1 = win
            fb = self.fallback()[..., y0:y1, x0:x1]
            x, lat, warns = guard_decode(lambda z: decode_window(self.model, self.cond, z, win), lat, win,
                                         fallback=fb)
            xw = to_hwc(x[0])
            if seam_error(xw, previous, win, splice, (H, W), max(2, margin // 8)) <= SEAM_TOLERANCE \
                    or attempt == 2:
                break
            margin *= 2
        sy0, sy1, sx0, sx1 = splice
        sy1, sx1 = min(sy1, H), min(sx1, W)
        raw = previous.copy()
        if sy1 > sy0 and sx1 > sx0:
            raw[sy0:sy1, sx0:sx1] = xw[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0]
        how = f"decoded a {y1 - y0}x{x1 - x0} window"
        if margin != start:
            how += f", margin widened to {margin} px"
        return EditDecode(raw, lat, warns, how, (sy0, max(sy0, sy1), sx0, max(sx0, sx1)))


def seam_error(xw: np.ndarray, previous: np.ndarray, win, splice, hr_size, band: int) -> float:
    """Max |window decode ``xw`` - ``previous``| over the ``band`` pixels just outside the
    splice box (inside the window and the unpadded image ``hr_size``)."""
    H, W = hr_size
    y0, y1, x0, x1 = win
    sy0, sy1, sx0, sx1 = splice
    by0, by1 = max(y0, sy0 - band), min(y1, sy1 + band, H)
    bx0, bx1 = max(x0, sx0 - band), min(x1, sx1 + band, W)
    if by1 <= by0 or bx1 <= bx0:
        return 0.0
    d = np.abs(xw[by0 - y0:by1 - y0, bx0 - x0:bx1 - x0] - previous[by0:by1, bx0:bx1]).max(axis=2)
    inner = np.zeros(d.shape, bool)
    iy0, iy1 = max(sy0, by0) - by0, min(sy1, by1) - by0
    ix0, ix1 = max(sx0, bx0) - bx0, min(sx1, bx1) - bx0
    inner[iy0:iy1, ix0:ix1] = True
    ring = d[~inner]
    return float(ring.max()) if ring.size else 0.0
