"""Safe decoding of user-uploaded images into ``uint8`` RGB arrays.

Everything a browser (or an API client) uploads goes through :func:`load_rgb`
before it reaches the model.  It is strict on purpose:

* **formats**: only PNG, JPEG, WebP, BMP, GIF and TIFF are opened (Pillow is told
  so explicitly), so plugins that shell out (EPS/Ghostscript) or parse exotic
  containers are never reached;
* **size limits**: the file size (``max_bytes``) is checked before decoding, the
  pixel count (``max_pixels``) from the header *before* any pixel data is
  decoded, and ``PIL.Image.MAX_IMAGE_PIXELS`` is lowered to the same limit as a
  second line of defence against decompression bombs (a PNG header that
  claims 50000×50000 is refused without allocating anything);
* **too small**: images with a side below ``min_side`` are refused;
* **pixel formats**, all converted to 8-bit RGB:

  - grayscale (``1``, ``L``) → replicated to three channels;
  - palette (``P``/``PA``) → expanded through the palette;
  - 16-bit / 32-bit integer (``I;16*``, ``I``) → scaled by 1/257 (65535 → 255);
    floating point (``F``) → values in [0, 1] are scaled by 255, others clipped
    to [0, 255];
  - **alpha (RGBA, LA, PA, palette transparency) is composited on a white
    background**, the convention of image viewers; the colour under
    transparent pixels is often arbitrary, so simply dropping alpha could show
    garbage.  A note says so;
  - CMYK, YCbCr, LAB, HSV → converted by Pillow;
  - EXIF orientation is applied;
  - animated GIF / APNG / WebP and multi-page TIFF → **first frame only**, with
    a note.

* **errors**: empty, corrupt, truncated, unsupported or oversized files raise
  :class:`ImageInputError` (a ``ValueError``) with a message meant for the user.

The caller gets ``(array, notes)``: ``notes`` are short human-readable strings
about conversions that happened (shown in the app's status line).

Arrays handed to the session and engine directly (the Python API) are checked by
:func:`check_image`.
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.limits import MAX_UPLOAD_BYTES as MAX_BYTES          # same as the server's upload limit
from app.limits import MAX_UPLOAD_PIXELS as MAX_PIXELS        # decoded pixels (e.g. 4000×4000)
from app.limits import MIN_UPLOAD_SIDE as MIN_SIDE

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")

# Second line of defence: Pillow warns above this and raises above twice this.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageInputError(ValueError):
    """An uploaded image cannot be used; ``str(err)`` is a user-facing message."""


def _mp(n: int) -> str:
    return f"{n / 1e6:.1f} MP"


def _read_bytes(src, max_bytes: int, name: str) -> bytes:
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
    else:
        path = Path(os.fspath(src))
        if not path.is_file():
            raise ImageInputError(f"{name}: no such file")
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageInputError(f"{name}: the file is {size / 2**20:.1f} MB; the limit is "
                                  f"{max_bytes / 2**20:.0f} MB")
        data = path.read_bytes()
    if len(data) == 0:
        raise ImageInputError(f"{name}: the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageInputError(f"{name}: the file is {len(data) / 2**20:.1f} MB; the limit is "
                              f"{max_bytes / 2**20:.0f} MB")
    return data


def _to_uint8_rgb(im: Image.Image, notes: list[str]) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16") or a.max(initial=0) > 255:
            a = a / 257.0
            notes.append("16-bit image converted to 8 bits")
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        notes.append("floating-point image converted to 8 bits")
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    elif mode == "PA":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        alpha = np.asarray(rgba)[..., 3]
        if alpha.min(initial=255) < 255:
            notes.append("transparent areas composited on white")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    if im.mode in ("1", "L"):
        notes.append("grayscale image converted to RGB")
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.array(im, dtype=np.uint8)  # a copy, detached from Pillow


def load_rgb(src, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
             min_side: int = MIN_SIDE, name: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Decode ``src`` (a path or the file's bytes) into ``uint8`` H×W×3 RGB.

    Returns ``(image, notes)``.  Raises :class:`ImageInputError` with a clear
    message for anything that cannot or must not be decoded.
    """
    if name is None:
        name = Path(os.fspath(src)).name if not isinstance(src, (bytes, bytearray, memoryview)) \
            else "image"
    data = _read_bytes(src, max_bytes, name)
    notes: list[str] = []
    # 1. parse the header only; 2. check the size; 3. decode the pixels.
    try:
        im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as e:
        m = re.search(r"\((\d+) pixels\)", str(e))
        size = f" ({_mp(int(m.group(1)))})" if m else ""
        raise ImageInputError(f"{name}: the image is too large{size}; the limit is "
                              f"{_mp(max_pixels)} (refused before decoding)") from None
    except UnidentifiedImageError:
        raise ImageInputError(f"{name}: not a readable image (corrupt, or not one of "
                              f"{', '.join(ALLOWED_FORMATS)})") from None
    except Exception as e:  # noqa: BLE001 - any parser failure is a bad upload
        raise ImageInputError(f"{name}: corrupt image file ({type(e).__name__})") from None
    with im:
        w, h = im.size
        if w * h > max_pixels:
            raise ImageInputError(f"{name}: the image is {w}×{h} ({_mp(w * h)}); the limit is "
                                  f"{_mp(max_pixels)}")
        if min(w, h) < min_side:
            raise ImageInputError(f"{name}: the image is {w}×{h}; it must be at least "
                                  f"{min_side}×{min_side} pixels")
        n_frames = getattr(im, "n_frames", 1) or 1
        try:
            if n_frames > 1:
                im.seek(0)
                notes.append(f"{im.format} has {n_frames} frames: the first frame is used")
            im.load()
            if n_frames <= 1:
                # EXIF orientation (a still photo): rotate as a viewer would.
                rotated = ImageOps.exif_transpose(im)
                if rotated is not None and rotated.size != im.size:
                    notes.append("rotated by its EXIF orientation")
                frame = rotated if rotated is not None else im
            else:
                frame = im.copy()
            arr = _to_uint8_rgb(frame, notes)
        except Image.DecompressionBombError:
            raise ImageInputError(f"{name}: the image is too large to decode safely (limit "
                                  f"{_mp(max_pixels)})") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            msg = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            raise ImageInputError(f"{name}: the image data is corrupt or truncated ({msg})") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < min_side or arr.shape[1] < min_side:
        raise ImageInputError(f"{name}: could not convert the image to RGB")
    return arr, notes


def fit_max_side(img: np.ndarray, max_side: int) -> tuple[np.ndarray, str | None]:
    """Shrink ``img`` (area resampling) so its longest side is at most ``max_side``.

    Returns ``(image, note)``; ``note`` is ``None`` when nothing changed.
    """
    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img, None
    f = max_side / max(h, w)
    nh, nw = max(1, round(h * f)), max(1, round(w * f))
    out = np.array(Image.fromarray(img).resize((nw, nh), Image.Resampling.BOX), dtype=np.uint8)
    return out, f"downsized from {w}×{h} to {nw}×{nh} (server limit: {max_side} px on the longest side)"


def to_png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(img, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def check_image(img, what: str) -> np.ndarray:
    """An image array for the session/engine: uint8 HxWx3 (HxW grey and HxWx4 RGBA are
    converted, alpha dropped); ``ValueError`` naming ``what`` otherwise."""
    if img is None:
        raise ValueError(f"{what}: no image given")
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ValueError(f"{what} must be a uint8 image (got dtype {a.dtype})")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"{what} must be an HxWx3 RGB image (got shape {a.shape})")
    if a.shape[2] == 4:
        a = a[..., :3]
    if min(a.shape[:2]) < 1:
        raise ValueError(f"{what} is empty (shape {a.shape})")
    return np.ascontiguousarray(a)
