"""Hosting limits enforced on the server (issue #16): session files within ``--max-side``
and the memory limit, bounded paste destinations, the memory estimate checked before an
action runs, and our own messages for text in number fields, non-image brush layers and
too narrow uploads.  Each refusal is tested on the session directly and through the API
(``gradio_client``); the server stays up and the tab keeps (or never gets) its session."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from app_testing import (client, editor_value, example_photo, read, running_app, save_png,  # noqa: E402
                         tiny_model_path)

from app import limits  # noqa: E402
from app.session import EditSession, SessionFileError  # noqa: E402

MAX_SIDE = 32
# a 32² LR (128² HR) loads and generates 1 sample within this, 16 samples do not
ACTION_MB = 20


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import flow

    return flow.load_model(tiny_model_path(tmp_path_factory.mktemp("m")), device="cpu")


@pytest.fixture(scope="module")
def lr40():
    return read(example_photo())[:40, :40].copy()


@pytest.fixture(scope="module")
def big_session_file(model, lr40, tmp_path_factory):
    """A valid session file (correct checksum) whose LR (40²) exceeds ``MAX_SIDE``."""
    s = EditSession(model, lr40)
    s.generate(0.8, 0, 2)
    p = tmp_path_factory.mktemp("s") / "big.srflow"
    s.save(p)
    return p


# ----------------------------------------------------------------------------
# on the session
# ----------------------------------------------------------------------------

def test_limits_estimate():
    assert limits.action_bytes(100, 100, 1) == 10_000 * (limits.BYTES_PER_HR_PIXEL + limits.KEPT_BYTES_PER_HR_PIXEL)
    limits.check_action("x", 100, 100, 1, max_mb=100)
    with pytest.raises(ValueError, match=r"generate on a 300×200 result, 4 images needs about \d+ MB; "
                                         r"this server allows 1 MB"):
        limits.check_action("generate", 200, 300, 4, max_mb=1)


def test_session_file_respects_max_side(model, big_session_file):
    with pytest.raises(SessionFileError, match=r"LR of 40×40.*at most 32 px.*--max-side"):
        EditSession.load(big_session_file, model, max_lr_side=MAX_SIDE)
    with pytest.raises(SessionFileError, match=r"needs about \d+ MB; this server allows 1 MB"):
        EditSession.load(big_session_file, model, max_action_mb=1)
    s = EditSession.load(big_session_file, model, max_lr_side=40)      # within the limits: opens
    assert s.lr.shape == (40, 40, 3) and len(s.gallery) == 2 and s.max_lr_side == 40


def test_session_file_images_must_fit_the_lr(model, lr40, tmp_path):
    """A forged file with a valid checksum whose gallery image is larger than the LR × scale."""
    from app.session import files

    s = EditSession(model, lr40)
    s.generate(0.8, 0, 1)
    s.gallery[0] = s.gallery[0].__class__(0, 0.8, np.zeros((400, 400, 3), np.uint8), s.gallery[0].latents,
                                          None, None)
    p = tmp_path / "forged.srflow"
    files.save_session(s, p)
    with pytest.raises(SessionFileError, match=r"gallery.0.image is \(400, 400, 3\), expected \(160, 160, 3\)"):
        EditSession.load(p, model)


def test_session_refuses_large_lr_and_memory(model, lr40):
    with pytest.raises(ValueError, match=r"LR of 40×40.*at most 32 px"):
        EditSession(model, lr40, max_lr_side=MAX_SIDE)
    with pytest.raises(ValueError, match=r"loading the image on a 160×160 result needs about \d+ MB; "
                                         r"this server allows 1 MB"):
        EditSession(model, lr40, max_action_mb=1)
    s = EditSession(model, lr40[:32, :32], max_action_mb=ACTION_MB)
    with pytest.raises(ValueError, match=r"generate on a 128×128 result, 16 images needs about 2\d MB; "
                                         r"this server allows 20 MB.*fewer samples"):
        s.generate(0.8, 0, 16)
    assert s.current is None and s.gallery == []                # refused before it ran
    s.generate(0.8, 0, 1)
    with pytest.raises(ValueError, match=r"restore on a 160×160 result"):
        s.restore(np.kron(lr40, np.ones((4, 4, 1), np.uint8)), 0.8, 0)
    assert len(s.gallery) == 1


def test_session_transfer_destination_bounded(model, lr40):
    s = EditSession(model, lr40)
    s.generate(0.8, 0, 1)
    before = s.current.copy()
    with pytest.raises(ValueError, match=r"destination size 4000×4000 \(width×height\) is larger than the image "
                                         r"\(160×160\); choose at most 160×160"):
        s.transfer(read(example_photo()), (0, 0, 32, 32), (0, 0), (4000, 4000))
    np.testing.assert_array_equal(s.current, before)
    assert not s.can_undo


# ----------------------------------------------------------------------------
# through the API
# ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(model):
    with running_app({"tiny": model}, max_side=MAX_SIDE, max_action_mb=ACTION_MB) as d:
        yield d


@pytest.fixture
def c(demo):
    return client(demo)


def expect_error(fn, fragment: str):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as ei:
        fn()
    msg = str(ei.value)
    assert fragment.lower() in msg.lower(), msg
    assert "verbose error reporting" not in msg and "Traceback" not in msg, msg
    return msg


def alive(c) -> dict:
    info = c.predict(api_name="/info")
    assert isinstance(info, dict)
    return info


def load(c, path, hr=False):
    from gradio_client import handle_file

    return c.predict(handle_file(str(path)), hr, "tiny", api_name="/load_image")


def test_api_session_upload_respects_max_side(c, big_session_file):
    from gradio_client import handle_file

    expect_error(lambda: c.predict(handle_file(str(big_session_file)), "tiny", api_name="/upload_session"),
                 f"LR of 40×40; this server allows at most {MAX_SIDE} px")
    assert alive(c)["loaded"] is False


def test_api_memory_estimate_before_generate(c):
    load(c, example_photo(), hr=True)                        # LR 32² (HR 128²)
    expect_error(lambda: c.predict(0.8, 0, 16, api_name="/generate"),
                 f"16 images needs about 2")
    info = alive(c)
    assert info["loaded"] and info["gallery"] == [] and info["hr_size"] is None
    c.predict(0.8, 0, 1, api_name="/generate")
    assert len(alive(c)["gallery"]) == 1


def test_api_transfer_destination_bounded(c):
    from gradio_client import handle_file

    load(c, example_photo(), hr=True)
    c.predict(0.8, 0, 1, api_name="/generate")
    expect_error(lambda: c.predict(handle_file(str(example_photo())), 0, 0, 32, 32, 0, 0, 4000, 4000, "local",
                                   0.8, 0, api_name="/transfer"),
                 "destination size 4000×4000 (width×height) is larger than the image (128×128)")
    assert alive(c)["can_undo"] is False


def test_api_text_where_a_number_goes(c):
    load(c, example_photo(), hr=True)
    expect_error(lambda: c.predict(0.8, "abc", 1, api_name="/generate"), "“Seed” must be a number, got 'abc'")
    expect_error(lambda: c.predict("warm", 0, 1, api_name="/generate"), "must be a number, got 'warm'")
    assert alive(c)["gallery"] == []


def test_api_non_image_brush_layers(c, tmp_path):
    load(c, example_photo(), hr=True)
    _, cur, _ = c.predict(0.8, 0, 1, api_name="/generate")
    bg = save_png(read(cur), tmp_path / "bg.png")
    txt = tmp_path / "layer.png"
    txt.write_text("not an image at all")
    expect_error(lambda: c.predict(editor_value(bg, [txt]), 0.8, 0, 1, api_name="/resample_region"),
                 "brush layer 0 is not a readable image")
    expect_error(lambda: c.predict(editor_value(txt, []), 0.8, 0, 1, api_name="/resample_region"),
                 "brush background is not a readable image")
    assert alive(c)["can_undo"] is False


def test_api_narrow_upload_names_its_own_size(c, tmp_path):
    p = save_png(np.full((8, 20000, 3), 128, np.uint8), tmp_path / "strip.png")
    msg = expect_error(lambda: load(c, p), "the image is 20000×8: too narrow")
    assert f"{MAX_SIDE}×1" in msg and "aspect ratio" in msg
    msg = expect_error(lambda: load(c, p, hr=True), "20000×8")
    assert alive(c)["loaded"] is False


# ----------------------------------------------------------------------------
# the handlers' own checks (several models: scales and the rescaling model)
# ----------------------------------------------------------------------------

def test_studio_memory_of_other_models(model, tmp_path):
    """Compare with an 8× model, switching to it, and rescaling are estimated before they run."""
    import gradio as gr
    import torch

    import flow
    from app.ui import Studio, TabState
    from app_testing import HC_RESC

    torch.manual_seed(0)
    m8 = flow.SRFlow(flow.preset("tiny_8x")).eval()
    models = {"tiny": model, "tiny8": m8}
    if HC_RESC.is_file():
        models["resc"] = flow.load_model(HC_RESC, device="cpu")
    st = Studio(models, max_side=MAX_SIDE, max_action_mb=ACTION_MB)
    photo = save_png(read(example_photo()), tmp_path / "photo.png")          # 128² HR
    lr32 = save_png(read(example_photo())[:32, :32], tmp_path / "lr32.png")  # 32² LR: 128² at 4×, 256² at 8×
    tab, *_ = st.load_image(TabState(), lr32, False, "tiny")
    before = tab.session
    with pytest.raises(gr.Error, match=r"compare with tiny8 on a 256×256 result needs about 6\d MB; "
                                       r"this server allows 20 MB"):
        st.compare(tab, "tiny8", "tiny8", 0.8, 0)
    with pytest.raises(gr.Error, match=r"loading the image on a 256×256 result needs about 6\d MB"):
        st.set_model(tab, "tiny8")
    assert tab.session is before and tab.model_name == "tiny"               # the tab keeps its session
    st.compare(tab, "tiny", "tiny", 0.8, 0)                                  # within the limit: runs
    if "resc" in models:
        small = Studio(models, max_side=MAX_SIDE, max_action_mb=10)
        with pytest.raises(gr.Error, match=r"rescale with resc on a 128×128 result, 2 images needs about 1\d MB; "
                                           r"this server allows 10 MB"):
            small.rescale(photo, "resc", None)


def test_every_number_and_editor_is_checked(demo):
    """Every number field, slider and brush editor of the page is one of ours (clear messages)."""
    import gradio as gr

    from app.ui import components as ours

    blocks = list(demo.blocks.values())
    for base, mine in ((gr.Number, ours.Number), (gr.Slider, ours.Slider), (gr.ImageEditor, ours.ImageEditor)):
        found = [b for b in blocks if isinstance(b, base)]
        assert found and all(isinstance(b, mine) for b in found), (base, [type(b) for b in found])
