"""Helpers shared by the app tests (gradio_client, bad inputs, browser).

The app is launched in-process on a free port and closed afterwards; the
environment is made silent (no analytics, no telemetry) before gradio loads.
"""
from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TRAINED = ROOT / "tests" / "data" / "tiny_trained_4x.safetensors"
HC_SR = ROOT / "tests" / "data" / "tiny_hcflow_sr_4x.safetensors"            # tests/make_fixture.py --hcflow
HC_RESC = ROOT / "tests" / "data" / "tiny_hcflow_rescaling_4x.safetensors"
EXAMPLES = ROOT / "assets" / "examples"


def tiny_model_path(tmp_dir: Path) -> Path:
    """The trained test fixture if present, else a random ``tiny_4x`` saved in ``tmp_dir``."""
    if TRAINED.is_file():
        return TRAINED
    import torch

    import flow

    torch.manual_seed(0)
    path = Path(tmp_dir) / "tiny_random_4x.safetensors"
    flow.save_safetensors(flow.SRFlow(flow.preset("tiny_4x")), path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(models: dict, **kw):
    """Launch ``build_demo(models, **kw)`` on a free port; yields the demo (``demo.local_url``)."""
    from app.ui import build_demo, launch_kwargs

    max_file_size = kw.pop("max_file_size", "20mb")
    demo = build_demo(models, **kw)
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                **launch_kwargs(max_file_size))
    try:
        yield demo
    finally:
        demo.close()


def client(demo):
    from gradio_client import Client

    return Client(demo.local_url, verbose=False, download_files=True)


def read(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def save_png(arr: np.ndarray, path) -> str:
    Image.fromarray(np.asarray(arr)).save(path, format="PNG")
    return str(path)


def png_bytes(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(arr)).save(buf, format="PNG", **kw)
    return buf.getvalue()


def brush_layer(shape_hw, box, path) -> str:
    """A transparent RGBA layer with an opaque stroke over ``box = (y0, x0, y1, x1)``."""
    h, w = shape_hw
    layer = np.zeros((h, w, 4), np.uint8)
    y0, x0, y1, x1 = box
    layer[y0:y1, x0:x1] = (255, 59, 107, 255)
    return save_png(layer, path)


def editor_value(background_path, layer_paths):
    from gradio_client import handle_file

    return {"background": handle_file(str(background_path)),
            "layers": [handle_file(str(p)) for p in layer_paths], "composite": None}


def example_photo(name="chelsea_cat") -> Path:
    return EXAMPLES / f"{name}.png"


def photo_crops(side: int, names=("astro", "coffee", "cat")) -> dict:
    """side x side HR crops of held-out photos (fixed offsets) for session tests."""
    from flow.data import heldout_images

    where = {"astro": ("astronaut", 40, 150), "coffee": ("coffee", 100, 200), "cat": ("chelsea", 20, 100)}
    ims = heldout_images(tuple(where[n][0] for n in names), crop=None)
    return {n: ims[where[n][0]][where[n][1]:where[n][1] + side, where[n][2]:where[n][2] + side].copy()
            for n in names}


def square(shape, y0, x0, n) -> np.ndarray:
    """A boolean mask of ``shape`` with an n x n square at (y0, x0)."""
    m = np.zeros(shape, bool)
    m[y0:y0 + n, x0:x0 + n] = True
    return m


def full_decode(s) -> np.ndarray:
    """The full-image float decode of an EditSession's current latents (H, W, 3)."""
    import torch

    with torch.no_grad():
        return s.model.decode(s.cond, s.latents)[0].permute(1, 2, 0).numpy()

