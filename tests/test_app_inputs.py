"""Bad and unusual inputs: each gives a clear message, and the server keeps answering.

Covers the decoder (app/images.py) directly, the same files through the running
app (gradio_client), bad numbers/masks/session files, and model loading with a
wrong official config (launch.py).
"""
from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from app_testing import (ROOT, brush_layer, client, editor_value, example_photo, png_bytes, read,
                         running_app, save_png, tiny_model_path)

from app.images import ImageInputError, fit_max_side, load_rgb

MAX_SIDE = 48
# the >16 MP test image makes Pillow warn before our own check refuses it
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


# ----------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------

def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png_header_only(w: int, h: int) -> bytes:
    """A syntactically valid PNG header claiming w×h RGB, with no pixel data."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _chunk(b"IEND", b""))


def rgb16_png(arr16: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (colour type 2, bit depth 16), written by hand."""
    h, w, _ = arr16.shape
    raw = b"".join(b"\x00" + arr16[y].astype(">u2").tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


def gif_bytes(frames) -> bytes:
    buf = io.BytesIO()
    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=100, loop=0)
    return buf.getvalue()


RNG = np.random.default_rng(0)
PHOTO = read(example_photo("coffee_cup"))          # 128×128 RGB

BAD_FILES = {
    # name: (bytes, expected message fragment)
    "corrupt.png": (b"\x89PNG\r\n\x1a\n" + b"this is not a png" * 20, "not a readable image"),
    "garbage.jpg": (os.urandom(3000), "not a readable image"),
    "truncated.png": (png_bytes(PHOTO)[:600], "corrupt or truncated"),
    "empty.png": (b"", "empty"),
    "one_pixel.png": (png_bytes(np.zeros((1, 1, 3), np.uint8)), "at least 8×8"),
    "bomb_header.png": (png_header_only(50000, 50000), "too large"),
    "too_many_pixels.png": (png_bytes(np.zeros((4100, 4100), np.uint8)), "16.8 MP"),
    "vector.eps": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n", "not a readable image"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_decoder_refuses_bad_files(name):
    data, msg = BAD_FILES[name]
    with pytest.raises(ImageInputError, match=msg):
        load_rgb(data, name=name)


def test_decoder_converts_unusual_formats():
    g = RNG.integers(0, 256, (20, 24), dtype=np.uint8)
    out, notes = load_rgb(png_bytes(g))
    assert out.shape == (20, 24, 3) and all(np.array_equal(out[..., k], g) for k in range(3))
    assert any("grayscale" in n for n in notes)

    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = (10, 200, 30)
    rgba[:8, :, 3] = 255            # top half opaque, bottom half fully transparent
    rgba[8:, :, :3] = (0, 0, 0)     # arbitrary colour under alpha 0 must not show
    out, notes = load_rgb(png_bytes(rgba))
    assert (out[:8] == (10, 200, 30)).all() and (out[8:] == 255).all()
    assert any("white" in n for n in notes)

    g16 = np.array([[0, 257 * 100, 65535, 257 * 7]] * 8 + [[65535, 0, 0, 0]] * 8, np.uint16)
    g16 = np.repeat(g16, 4, axis=1)
    buf = io.BytesIO()
    Image.fromarray(g16).save(buf, format="PNG")
    out, notes = load_rgb(buf.getvalue())
    assert out.dtype == np.uint8 and out[0, :4, 0].tolist() == [0, 0, 0, 0]
    assert out[0, 4, 0] == 100 and out[0, 8, 0] == 255 and out[0, 12, 0] == 7
    assert any("16-bit" in n for n in notes)

    c16 = (RNG.integers(0, 256, (12, 12, 3)) * 257).astype(np.uint16)
    out, _ = load_rgb(rgb16_png(c16))
    np.testing.assert_array_equal(out, (c16 // 257).astype(np.uint8))

    frames = [np.full((16, 16, 3), v, np.uint8) for v in (40, 200, 120)]
    out, notes = load_rgb(gif_bytes(frames))
    assert abs(int(out.mean()) - 40) <= 2
    assert any("3 frames" in n and "first" in n for n in notes)

    pal = Image.fromarray(PHOTO).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    out, _ = load_rgb(buf.getvalue())
    np.testing.assert_array_equal(out, np.asarray(pal.convert("RGB")))


def test_fit_max_side():
    img = np.zeros((100, 50, 3), np.uint8)
    out, note = fit_max_side(img, 40)
    assert out.shape == (40, 20, 3) and "downsized from 50×100 to 20×40" in note
    same, note = fit_max_side(img, 100)
    assert same is img and note is None


# ----------------------------------------------------------------------------
# through the running app
# ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    import flow

    tmp = tmp_path_factory.mktemp("m")
    model = flow.load_model(tiny_model_path(tmp), device="cpu")
    with running_app({"tiny": model}, max_side=MAX_SIDE, max_file_size="2mb") as d:
        yield d


@pytest.fixture
def c(demo):
    return client(demo)


def alive(c) -> bool:
    info = c.predict(api_name="/info")
    return isinstance(info, dict) and "loaded" in info


def expect_error(fn, fragment: str):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as ei:
        fn()
    msg = str(ei.value)
    assert fragment.lower() in msg.lower(), msg
    assert "Traceback" not in msg
    return msg


def load(c, path, hr=False):
    from gradio_client import handle_file

    return c.predict(handle_file(str(path)), hr, "tiny", api_name="/load_image")


def test_bad_files_through_app(c, tmp_path):
    for name, (data, msg) in BAD_FILES.items():
        p = tmp_path / name
        p.write_bytes(data)
        if name.endswith(".eps"):          # refused by the upload's file-type check already
            msg = "Invalid file type"
        expect_error(lambda: load(c, p), msg)
        assert alive(c)
    # the tab never got a session from those
    assert c.predict(api_name="/info")["loaded"] is False


def test_unusual_formats_load_with_notes(c, tmp_path):
    cases = {
        "gray.png": (png_bytes(PHOTO[:40, :40, 0]), "grayscale"),
        "rgba.png": (png_bytes(np.dstack([PHOTO[:40, :40], np.full((40, 40), 128, np.uint8)])), "white"),
        "rgb16.png": (rgb16_png(PHOTO[:40, :40].astype(np.uint16) * 257), "LR 40×40"),
        "anim.gif": (gif_bytes([PHOTO[:40, :40], PHOTO[40:80, 40:80]]), "first frame"),
    }
    for name, (data, note) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        lr, cur, status = load(c, p)
        assert note in status, (name, status)
        assert read(lr).shape == (40, 40, 3)


def test_max_side_downsizes_with_a_note(c, tmp_path):
    p = save_png(PHOTO, tmp_path / "big_lr.png")             # 128 > MAX_SIDE
    lr, cur, status = load(c, p)
    assert read(lr).shape == (MAX_SIDE, MAX_SIDE, 3)
    assert f"downsized from 128×128 to {MAX_SIDE}×{MAX_SIDE}" in status
    lr, cur, status = load(c, p, hr=True)                     # HR 128 → LR 32: fits
    assert read(lr).shape == (32, 32, 3) and "downsized" not in status


def test_too_small_for_downscale_first(c, tmp_path):
    p = save_png(PHOTO[:20, :20], tmp_path / "small.png")
    expect_error(lambda: load(c, p, hr=True), "too small for 4×")
    assert alive(c)


def test_upload_over_max_file_size(c, tmp_path):
    p = tmp_path / "huge.png"
    p.write_bytes(png_bytes(PHOTO) + os.urandom(3 * 2**20))    # 3 MB > the 2 MB limit
    with pytest.raises(Exception) as ei:
        load(c, p)
    assert "exceed" in str(ei.value).lower() or "413" in str(ei.value) or "large" in str(ei.value).lower()
    assert alive(c)


def test_actions_before_loading(c):
    expect_error(lambda: c.predict(0.8, 0, 4, api_name="/generate"), "Load an image first")
    expect_error(lambda: c.predict(api_name="/undo"), "Load an image first")
    expect_error(lambda: c.predict(api_name="/download_png"), "Load an image first")
    assert alive(c)


def test_bad_numbers_and_masks(c, tmp_path):
    lr, _, _ = load(c, example_photo("rocket"), hr=True)
    # out-of-range sliders/numbers are refused by the components' own bounds (clear messages)
    expect_error(lambda: c.predict(0.8, 0, 0, api_name="/generate"), "less than minimum value 1")
    expect_error(lambda: c.predict(0.8, 0, 100, api_name="/generate"), "greater than maximum value 16")
    expect_error(lambda: c.predict(5.0, 0, 2, api_name="/generate"), "greater than maximum value 1.2")
    expect_error(lambda: c.predict(-1, 0, 2, api_name="/generate"), "less than minimum value 0")
    expect_error(lambda: c.predict(0.8, -3, 2, api_name="/generate"), "less than minimum value 0")
    _, cur, _ = c.predict(0.8, 0, 2, api_name="/generate")
    expect_error(lambda: c.predict(99, api_name="/pick"), "sample index 99 is out of range")
    bg = save_png(read(cur), tmp_path / "bg.png")
    empty = save_png(np.zeros((128, 128, 4), np.uint8), tmp_path / "empty_layer.png")
    expect_error(lambda: c.predict(editor_value(bg, [empty]), 0.8, 0, 1, api_name="/resample_region"),
                 "brush mask is empty")
    expect_error(lambda: c.predict(editor_value(bg, []), 0.8, 0, 1, api_name="/resample_region"),
                 "brush mask is empty")
    layer = brush_layer((128, 128), (0, 0, 16, 16), tmp_path / "layer.png")
    expect_error(lambda: c.predict(editor_value(bg, [layer]), 7, 1, api_name="/take_region"), "out of range")
    expect_error(lambda: c.predict("sideways", 0.8, 0, False, None, api_name="/normalize"),
                 "not in the list of choices")
    from gradio_client import handle_file
    expect_error(lambda: c.predict(handle_file(str(example_photo())), 50, 50, 10, 10, 0, 0, 0, 0, "local", 0.8,
                                   0, api_name="/transfer"), "source box")
    expect_error(lambda: c.predict(handle_file(str(example_photo())), 0, 0, 10, 10, 500, 0, 0, 0, "local", 0.8,
                                   0, api_name="/transfer"), "outside the image")
    assert alive(c)
    # after all that, the session still works and still has its image
    _, cur2, _ = c.predict(0.8, 0, 2, api_name="/generate")
    np.testing.assert_array_equal(read(cur2), read(cur))


def test_bad_session_files(c, tmp_path):
    from gradio_client import handle_file

    for name, (data, msg) in {"empty.srflow": (b"", "empty"),
                              "junk.srflow": (os.urandom(2000), "not a readable session file"),
                              "image.srflow": (png_bytes(PHOTO), "not a readable session file")}.items():
        p = tmp_path / name
        p.write_bytes(data)
        expect_error(lambda: c.predict(handle_file(str(p)), "tiny", api_name="/upload_session"), msg)
        assert alive(c)
    assert c.predict(api_name="/info")["loaded"] is False


# ----------------------------------------------------------------------------
# model loading: an official checkpoint with the wrong config
# ----------------------------------------------------------------------------

YAML_4X = """# our minimal official-style config for the tiny_4x preset
model: SRFlow
scale: 4
network_G:
  which_model_G: SRFlowNet
  in_nc: 3
  out_nc: 3
  nf: 16
  nb: 2
  gc: 8
  flow:
    K: 2
    L: 3
    additionalFlowNoAffine: 2
    fea_up0: true
    split: {enable: true}
    stackRRDB: {blocks: [0, 1], concat: true}
    CondAffineSeparatedAndCond: {hidden_channels: 16}
"""
YAML_8X = YAML_4X.replace("scale: 4", "scale: 8").replace("L: 3", "L: 4").replace("tiny_4x", "tiny_8x")


@pytest.fixture(scope="module")
def official_pth(tmp_path_factory):
    """A tiny_4x-shaped checkpoint in the official format (a plain state dict in a .pth)."""
    import torch

    import flow

    tmp = tmp_path_factory.mktemp("official")
    torch.manual_seed(0)
    model = flow.SRFlow(flow.preset("tiny_4x"))
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, tmp / "SRFlow_tiny_4X.pth")
    (tmp / "tiny_4x.yml").write_text(YAML_4X)
    (tmp / "tiny_8x.yml").write_text(YAML_8X)
    return tmp


def test_official_checkpoint_with_wrong_config(official_pth):
    import launch

    pth = official_pth / "SRFlow_tiny_4X.pth"
    with pytest.raises(SystemExit) as ei:
        launch.load_models([pth], [str(official_pth / "tiny_8x.yml")], device="cpu")
    msg = str(ei.value)
    assert "cannot load" in msg and "does not match" in msg and "--config" in msg
    # the right config loads, and the app offers it with its scale
    models = launch.load_models([pth], [str(official_pth / "tiny_4x.yml")], device="cpu")
    assert list(models) == ["SRFlow_tiny_4X"] and models["SRFlow_tiny_4X"].scale == 4
    # a .pth without any config, and a missing file
    with pytest.raises(SystemExit, match="pass its YAML with --config"):
        launch.load_models([pth], None)
    with pytest.raises(SystemExit, match="model file not found"):
        launch.load_models([official_pth / "nope.safetensors"], None)


def test_missing_default_model_is_explained(monkeypatch, tmp_path):
    import launch

    monkeypatch.setattr(launch, "DEFAULT_MODEL", tmp_path / "studio_4x.safetensors")
    paths = launch.model_paths(launch.parse_args([]))
    with pytest.raises(SystemExit, match="shipped model .* pass --model PATH"):
        launch.load_models(paths, None)


def test_launch_cli_reports_wrong_config_cleanly(official_pth):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(ROOT / "launch.py"), "--model", str(official_pth / "SRFlow_tiny_4X.pth"),
                        "--config", str(official_pth / "tiny_8x.yml"), "--device", "cpu", "--port", "1"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=str(ROOT))
    assert r.returncode != 0
    assert "does not match" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_launch_cli_serves(tmp_path):
    """launch.py starts a working server with the CLI settings; Ctrl-C stops it cleanly."""
    import signal
    import time

    from gradio_client import Client

    from app_testing import free_port

    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(tmp_path))
    env.pop("GRADIO_TEMP_DIR", None)
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), "--model", str(tiny_model_path(tmp_path)),
                             "--port", str(port), "--max-side", "24", "--queue-size", "4", "--device", "cpu"],
                            cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                c = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:  # noqa: BLE001 - not up yet
                assert proc.poll() is None, proc.stdout.read()
                assert time.time() < deadline, "the server did not start"
                time.sleep(1)
        info = c.predict(api_name="/info")
        assert info["loaded"] is False and list(info["models"].values())[0]["scale"] == 4
        lr, _, status = c.predict(1, False, None, api_name="/load_example")     # 128 px LR > --max-side 24
        assert read(lr).shape == (24, 24, 3) and "server limit: 24 px" in status
        caches = list(tmp_path.glob("srflow-studio-cache-*"))
        assert len(caches) == 1 and any(caches[0].rglob("*.png"))       # gradio's cache: its own dir
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=120)    # generous: a loaded 2-core machine is slow to shut down
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert "Traceback" not in out, out[-3000:]
    assert not list(tmp_path.glob("srflow-studio-*")), "temp dirs left behind"


def test_launch_args():
    import launch

    a = launch.parse_args(["--model", "a.safetensors,b.safetensors", "--model", "c.pth", "--config", "c.yml"])
    assert [p.name for p in launch.model_paths(a)] == ["a.safetensors", "b.safetensors", "c.pth"]
    assert (a.host, a.port, a.max_side, a.queue_size, a.concurrency) == ("127.0.0.1", 7860, 256, 16, 1)
    from app.models import SHIPPED
    # no --model: the shipped SRFlow model, then the shipped HCFlow files that exist
    assert [p.name for p in launch.model_paths(launch.parse_args([]))] == (
        ["studio_4x.safetensors"] + [p.name for n, p in SHIPPED.items() if n != "studio_4x" and p.is_file()])
    with pytest.raises(SystemExit):
        launch.parse_args(["--max-side", "0"])
    from app import limits
    assert launch.parse_args([]).max_action_mb == limits.MAX_ACTION_MB
    assert launch.parse_args(["--max-action-mb", "512"]).max_action_mb == 512
    with pytest.raises(SystemExit):
        launch.parse_args(["--max-action-mb", "0"])
