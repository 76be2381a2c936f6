"""Latent-space editing (SRFlow paper §4): seeded operations on :class:`Latents` and the
decoding an editing session builds on.  Works with any :class:`flow.models.protocol.FlowModel`.

Conventions:

* **Temperature** ``tau`` is a standard-deviation multiplier: latents are drawn
  from N(0, tau^2) (the official code's ``heat``).
* **Masks** are boolean HxW arrays in (unpadded) HR pixels.  :func:`level_masks`
  turns one into a per-level boolean map with the *footprint rule*: the latent at
  level position (i, j) with stride s covers HR pixels [s*i, s*i+s) x [s*j, s*j+s)
  and belongs to the region when that footprint touches the mask (max-pool with
  kernel = stride = s), optionally dilated by ``dilation`` positions per level.
* **Seeds**: region resampling draws with ``torch.Generator().manual_seed(seed)``
  a full-size N(0, 1) tensor per level (encode order, on the CPU) and keeps the
  masked entries, so a full-mask resample equals ``draw_latents`` with the same seed
  for a model that draws in encode order (SRFlow).  Normalization draws its new
  moments with ``numpy.random.default_rng(seed)`` (see :func:`normalize`).

Modules: :mod:`~flow.editing.masks` (level masks), :mod:`~flow.editing.latents`
(resampling, taking regions, normalization, restoration, style mixing and statistics matching:
latents only),
:mod:`~flow.editing.projection` (exact LR consistency), :mod:`~flow.editing.window`
(windowed decode/encode), :mod:`~flow.editing.guard` (the non-finite guard),
:mod:`~flow.editing.render` (whole-image and spliced edit decodes for a session),
:mod:`~flow.editing.transfer` (paste + harmonize, a style image's latents and their statistics),
:mod:`~flow.editing.checks` (argument checks).
"""
from .checks import check_masks, check_seed, check_temperature
from .guard import BOUND, bad_pixels, guard_decode
from .latents import (DEGENERATE_STD, MAX_STD_RATIO, MAX_STYLE_MEAN, MAX_STYLE_STD, MODES, NormInfo, StyleStats, draw_moments,
                      match_statistics, normalize, resample_region, restore_latents, style_transfer, take_region)
from .masks import count_masked, level_masks, masks_bbox
from .projection import project_lr
from .render import FULL_DECODE_FRACTION, SEAM_TOLERANCE, EditDecode, Renderer
from .transfer import STYLE_LR_SIDE, content_transfer, fit_image, paste, style_latents, style_statistics
from .window import DEFAULT_MARGIN, decode_window, edit_boxes, encode_window, pad_hr

__all__ = ["check_masks", "check_seed", "check_temperature", "BOUND", "bad_pixels", "guard_decode",
           "DEGENERATE_STD", "MODES", "NormInfo", "draw_moments", "normalize", "resample_region",
           "restore_latents", "style_transfer", "take_region", "count_masked", "level_masks", "masks_bbox",
           "project_lr", "FULL_DECODE_FRACTION", "SEAM_TOLERANCE", "EditDecode", "Renderer", "content_transfer",
           "fit_image", "paste", "style_latents", "STYLE_LR_SIDE", "style_statistics", "MAX_STD_RATIO",
           "MAX_STYLE_STD", "MAX_STYLE_MEAN", "StyleStats", "match_statistics", "DEFAULT_MARGIN", "decode_window", "edit_boxes",
           "encode_window", "pad_hr"]
