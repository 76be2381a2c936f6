"""Gradio components whose input checks give our own messages.

Gradio turns an exception inside a component's ``preprocess`` into its generic "not enabled
verbose error reporting" error (the server hides the details).  These subclasses check what
the client sent first and raise ``gr.Error`` with a message that says what to do, the same in
the browser and through the API:

* :class:`Number` and :class:`Slider`: text (or anything else) where a number goes;
* :class:`ImageEditor`: a background or brush layer that is not an image, or is too large.

They are subclasses, not wrapped instances, because Gradio rebuilds a component from its
class when a handler updates it (``gr.update``): a patched instance would lose its checks.
Gradio writes a ``components.pyi`` stub next to this module at import (for every component
subclass); it is generated, and ignored by git.
"""
from __future__ import annotations

import io
import math

import gradio as gr
from PIL import Image

from app.images import ALLOWED_FORMATS, MAX_BYTES, MAX_PIXELS


def _label(component) -> str:
    return f"“{component.label}”" if getattr(component, "label", None) else "a number field"


def _check_number(component, payload) -> None:
    if payload is None:
        return
    if isinstance(payload, (int, float)):
        if math.isfinite(payload):
            return
        raise gr.Error(f"{_label(component)} must be a finite number, got {payload!r}.", print_exception=False)
    text = repr(payload) if len(repr(payload)) <= 40 else repr(payload)[:40] + "…"
    raise gr.Error(f"{_label(component)} must be a number, got {text}: enter digits only (e.g. "
                   f"{component.minimum if component.minimum is not None else 0}).", print_exception=False)


class Number(gr.Number):
    """``gr.Number`` with a clear message for a value that is not a number."""

    def preprocess(self, payload):
        _check_number(self, payload)
        return super().preprocess(payload)


class Slider(gr.Slider):
    """``gr.Slider`` with a clear message for a value that is not a number."""

    def preprocess(self, payload):
        _check_number(self, payload)
        return super().preprocess(payload)


def _check_image_file(file, what: str) -> None:
    """``gr.Error`` unless ``file`` (FileData, bytes or None) is an image we can open."""
    if file is None:
        return
    help_ = (f"send {what} as a PNG image (the brush canvas exports PNG layers of the image's size; "
             "through the API: a PNG with alpha where the brush painted)")
    try:
        if isinstance(file, (bytes, bytearray, memoryview)):
            data = bytes(file)
        else:
            path = getattr(file, "path", None)
            if not path:
                raise ValueError
            with open(path, "rb") as f:
                data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise gr.Error(f"The brush {what} is over {MAX_BYTES / 2**20:.0f} MB: {help_}.", print_exception=False)
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise gr.Error(f"The brush {what} is {w}×{h}, over the {MAX_PIXELS / 1e6:.0f} MP limit: {help_}.",
                               print_exception=False)
            im.load()
    except gr.Error:
        raise
    except Exception:  # noqa: BLE001 - anything unreadable gets the same clear message
        raise gr.Error(f"The brush {what} is not a readable image: {help_}.", print_exception=False) from None


class ImageEditor(gr.ImageEditor):
    """``gr.ImageEditor`` that checks its background and layers itself (clear messages)."""

    def preprocess(self, payload):
        if payload is not None and getattr(payload, "id", None) is None:
            _check_image_file(getattr(payload, "background", None), "background")
            for k, layer in enumerate(getattr(payload, "layers", None) or []):
                _check_image_file(layer, f"layer {k}")
            _check_image_file(getattr(payload, "composite", None), "composite")
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except Exception:  # noqa: BLE001 - e.g. blob-stored data that does not decode
            raise gr.Error("The brush canvas sent data that is not an image: reload the page and paint again "
                           "(through the API: PNG background and layers).", print_exception=False) from None
