"""Windowed decode and encode: only the part of the image an edit can reach.

A latent edit changes the SR image mostly near the edited footprints.
:func:`edit_boxes` takes the bounding box of the changed latents' footprints, widens it
by ``margin`` HR pixels (the *splice* box, which replaces the current image) and by
another ``margin`` (the *window* actually decoded, aligned to the coarsest stride).
The window's border rows are wrong (the convolutions see zero padding instead of the
neighbouring content), and the edit's true effect beyond the splice box is dropped;
both decay with distance (measured in ``docs/MEASUREMENTS.md``: ``DEFAULT_MARGIN = 32``
keeps the whole-image error below 1/255 with a wide safety factor).  A model without a
local region decode (``model.supports_region`` False, HCFlow) decodes and encodes the
whole image and crops: exact, not faster.
"""
from __future__ import annotations

import torch

from ..models.protocol import Condition, Latents

#: Default splice margin of windowed decoding, in HR pixels.
DEFAULT_MARGIN = 32


def edit_boxes(bbox, padded_hw, align: int, margin: int = DEFAULT_MARGIN):
    """(window, splice) boxes (y0, y1, x0, x1) in padded-HR pixels for an edit whose
    changed latents' footprints span ``bbox``.  ``splice`` = bbox widened by
    ``margin`` (clipped to the image), ``window`` = splice widened by ``margin`` and
    aligned outwards to multiples of ``align`` (the coarsest stride)."""
    Hp, Wp = padded_hw
    y0, y1, x0, x1 = bbox
    splice = (max(0, y0 - margin), min(Hp, y1 + margin), max(0, x0 - margin), min(Wp, x1 + margin))
    m2 = 2 * margin
    win = (max(0, (y0 - m2) // align * align), min(Hp, -(-(y1 + m2) // align) * align),
           max(0, (x0 - m2) // align * align), min(Wp, -(-(x1 + m2) // align) * align))
    return win, splice


def decode_window(model, cond: Condition, lat: Latents, box) -> torch.Tensor:
    """``model.decode`` of the padded-HR window ``box`` (the whole padded image when
    the box covers it): float (N, 3, y1 - y0, x1 - x0), not clamped."""
    return model.decode(cond, lat, region=tuple(int(v) for v in box))


def encode_window(model, cond: Condition, hr_padded: torch.Tensor, box) -> list[torch.Tensor]:
    """Per-level latents of the window ``box`` of a padded HR image
    (``model.encode_window``: border positions approximate for a local encode)."""
    return model.encode_window(hr_padded, cond, tuple(int(v) for v in box))


def pad_hr(model, cond: Condition, hr: torch.Tensor) -> torch.Tensor:
    """Reflect-pad an unpadded HR tensor like ``model.encode`` does (:meth:`Condition.pad_hr`)."""
    return cond.pad_hr(hr)
