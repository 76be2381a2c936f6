"""Content and style from other images: paste a region and harmonize it in latent space
(SRFlow paper §4.4), and the latents of a style image (§4.2)."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..models.protocol import Condition, Latents
from ..ops.imresize import imresize, imresize_torch
from .latents import StyleStats, normalize, take_region
from .masks import level_masks, masks_bbox
from .window import DEFAULT_MARGIN, edit_boxes, encode_window


def paste(target: np.ndarray, source: np.ndarray, src_box, dst_yx, dst_hw):
    """Paste ``source[y0:y1, x0:x1]`` resized (MATLAB bicubic) to ``dst_hw`` into a
    copy of ``target`` at ``dst_yx`` (the part outside the target is cut off).
    Returns ``(pasted uint8, mask bool HxW of the pasted pixels)``."""
    Hs, Ws = source.shape[:2]
    try:
        y0, x0, y1, x1 = (int(v) for v in src_box)
        dy, dx = (int(v) for v in dst_yx)
        dh, dw = (int(v) for v in dst_hw)
    except (TypeError, ValueError):
        raise ValueError("src_box must be (y0, x0, y1, x1), dst_yx (y, x) and dst_hw (h, w) integers") from None
    if not (0 <= y0 < y1 <= Hs and 0 <= x0 < x1 <= Ws):
        raise ValueError(f"source box (y0={y0}, x0={x0}, y1={y1}, x1={x1}) is empty or outside the "
                         f"source image ({Hs}x{Ws})")
    if dh < 1 or dw < 1:
        raise ValueError(f"paste size must be positive, got {dh}x{dw}")
    H, W = target.shape[:2]
    ty0, tx0, ty1, tx1 = max(0, dy), max(0, dx), min(H, dy + dh), min(W, dx + dw)
    if ty0 >= ty1 or tx0 >= tx1:
        raise ValueError(f"paste position {dy},{dx} with size {dh}x{dw} lies outside the image ({H}x{W})")
    crop = source[y0:y1, x0:x1]
    patch = crop if crop.shape[:2] == (dh, dw) else imresize(crop, output_shape=(dh, dw))
    out = target.copy()
    out[ty0:ty1, tx0:tx1] = patch[ty0 - dy:ty1 - dy, tx0 - dx:tx1 - dx]
    mask = np.zeros((H, W), dtype=bool)
    mask[ty0:ty1, tx0:tx1] = True
    return out, mask


def content_transfer(model, cond: Condition, lat: Latents, pasted: torch.Tensor, mask_hr,
                     mode: str = "local", temperature: float = 0.8, seed: int = 0, dilation: int = 1,
                     margin: int = DEFAULT_MARGIN):
    """Harmonize a paste (§4.4).  ``pasted``: float (1, 3, H, W) image with the paste;
    ``mask_hr``: the pasted pixels.  The latents whose footprints touch the paste
    (dilated by ``dilation``) are replaced by the encoding of ``pasted`` (encoded in
    a window around them, with ``margin``: see :func:`flow.editing.window.encode_window`)
    and normalized there (``mode``, ``tau``,
    ``seed``, restricted to those latents); all other latents are kept.
    Returns ``(new latents, level masks)``."""
    masks = level_masks(mask_hr, lat, dilation=dilation)
    bbox = masks_bbox(masks, lat.strides)
    if bbox is None:
        raise ValueError("the paste region is empty")
    Hp, Wp = masks[0].shape[0] * lat.strides[0], masks[0].shape[1] * lat.strides[0]
    win, _ = edit_boxes(bbox, (Hp, Wp), model.total_stride, margin)
    hp = cond.pad_hr(pasted.to(lat.levels[0].device, lat.levels[0].dtype))
    enc = encode_window(model, cond, hp, win)
    y0, y1, x0, x1 = win
    levels = []
    for t, e, s in zip(lat.levels, enc, lat.strides):
        full = t.clone()
        full[..., y0 // s:y1 // s, x0 // s:x1 // s] = e
        levels.append(full)
    encoded = Latents(levels, list(lat.strides), tuple(lat.hr_size))
    mixed = take_region(lat, encoded, masks)
    return normalize(mixed, mode, temperature, seed, masks), masks



# ----------------------------------------------------------------------------
# style
# ----------------------------------------------------------------------------

def fit_image(img: np.ndarray, H: int, W: int) -> np.ndarray:
    """Resize (MATLAB bicubic, keeping the aspect ratio) so that the image covers
    HxW, then centre-crop to HxW."""
    h, w = img.shape[:2]
    if (h, w) == (H, W):
        return img.copy()
    s = max(H / h, W / w)
    nh, nw = max(H, int(math.ceil(h * s - 1e-9))), max(W, int(math.ceil(w * s - 1e-9)))
    r = imresize(img, output_shape=(nh, nw))
    y0, x0 = (nh - H) // 2, (nw - W) // 2
    return np.ascontiguousarray(r[y0:y0 + H, x0:x0 + W])


def style_latents(model, style_hr: torch.Tensor, style_lr: torch.Tensor | None = None) -> Latents:
    """z~ = f(y~; D_s(y~)): a style HR image (1, 3, H, W) encoded with its own LR
    (``style_lr``, or the float MATLAB-bicubic downscale when None)."""
    if style_lr is None:
        style_lr = imresize_torch(style_hr, 1.0 / model.scale).clamp(0, 1)
    cond = model.encode_condition(style_lr)
    lat, _ = model.encode(style_hr, cond)
    return lat


#: The LR side (pixels) at which :func:`style_statistics` encodes a style image: latent
#: statistics need a few thousand positions per level, not the target's full size.
STYLE_LR_SIDE = 64


def style_statistics(model, style: np.ndarray, lr_side: int = STYLE_LR_SIDE, device="cpu",
                     dtype=torch.float32) -> StyleStats:
    """The per-level latent statistics (:class:`StyleStats`) of a uint8 style image:
    it is resized (MATLAB bicubic, keeping the aspect ratio) to cover a square
    ``lr_side * scale`` HR image, centre-cropped, and encoded with its own MATLAB
    LR.  Costs one encoder pass at ``lr_side``² LR, independent of the target size."""
    from ..ops.images import to_tensor
    from ..ops.imresize import make_lr

    s = int(model.scale)
    side = max(int(lr_side), 8) * s
    hr = fit_image(style, side, side)
    hr_t = to_tensor(hr)[None].to(device, dtype)
    lr_t = to_tensor(make_lr(hr, s))[None].to(device, dtype)
    return StyleStats.of(style_latents(model, hr_t, lr_t))
