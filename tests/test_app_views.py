"""One source of truth for what is shown (issue #16): every action that changes a tab's
state is followed by one refresh of every view from the session (``app.ui.views.VIEW_NAMES``),
and that refresh shows the session's current image everywhere, also after harmonize,
restore and undo / redo (the previews only while the image they made is current).

The wiring is checked on the built ``gr.Blocks``; the views by calling the handlers
directly (no server).  tests/test_browser.py checks the same in a real browser.
"""
from __future__ import annotations

import os

import gradio as gr
import numpy as np
import pytest

from app_testing import example_photo, tiny_model_path

from app.ui.views import PREVIEWS, VIEW_NAMES


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    import flow
    from app.ui import build_demo

    tmp = tmp_path_factory.mktemp("models")
    return build_demo({"tiny": flow.load_model(tiny_model_path(tmp), device="cpu")}, max_side=64)


def test_every_state_changing_event_refreshes_every_view(demo):
    st = demo.studio
    fns = list(demo.fns.values())
    tab = next(b for b in demo.blocks.values() if isinstance(b, gr.State))
    by_id = {f._id: f for f in fns}
    refreshes = [f for f in fns if getattr(f.fn, "__func__", None) is type(st).views]
    assert refreshes
    n_views = len(VIEW_NAMES)
    for f in refreshes:                       # one view set, in one order, for every refresh
        assert len(f.outputs) == n_views
        assert [getattr(o, "elem_id", None) for o in f.outputs] == \
            [getattr(o, "elem_id", None) for o in refreshes[0].outputs]
    followed = {f.trigger_after for f in refreshes if f.trigger_only_on_success}
    changing = [f for f in fns if any(o is tab for o in f.outputs) and f not in refreshes]
    assert {f.api_name for f in changing} >= {"load_image", "load_example", "set_model", "generate", "pick",
                                              "resample_region", "take_region", "normalize", "transfer",
                                              "use_hr", "style_transfer", "restore", "undo", "redo",
                                              "upload_session", "set_lr_projection"}
    for f in changing:
        assert f._id in followed, f"{f.api_name or f.name} does not refresh the views"
        assert by_id[f._id] is f


def _views(st, tab, editor=None, use_gt=False) -> dict:
    return dict(zip(VIEW_NAMES, st.views(tab, editor, use_gt)))


def _value(v):
    return v.get("value") if isinstance(v, dict) and "__type__" in v else v


def _check_current(st, tab, editor=None) -> dict:
    """Every view that shows the current image shows the session's one."""
    v = _views(st, tab, editor)
    want = st.files.png(tab.session.current)
    assert _value(v["current"]) == want
    assert _value(v["slider"])[1] == want
    assert v["editor"]["background"] == want
    assert v["shown"].split()[-1] == os.path.basename(want)
    return v


def test_every_action_shows_the_session_current_image(demo, tmp_path):
    from PIL import Image

    st = demo.studio
    photo = str(example_photo("chelsea_cat"))
    tab, *_ = st.load_image(None, photo, True, "tiny")
    tab, gallery, cur, _ = st.generate(tab, 0.8, 0, 3)
    v = _check_current(st, tab)
    assert all(v[n] is None for n in PREVIEWS)
    tab, cur, _ = st.pick(tab, 2)
    _check_current(st, tab)
    layer = np.zeros((128, 128, 4), np.uint8)
    layer[8:40, 8:40] = (255, 59, 107, 255)
    editor = {"background": None, "layers": [layer], "composite": None}
    tab, *_ = st.resample_region(tab, editor, 0.8, 1, 1)
    _check_current(st, tab, editor)
    tab, *_ = st.take_region(tab, editor, 0, 1)
    _check_current(st, tab, editor)
    tab, *_ = st.normalize(tab, "global", 0.8, 0, False, None)
    _check_current(st, tab)

    # harmonize: the raw paste and the harmonized image while the harmonized one is current
    src = str(example_photo("astronaut_face"))
    tab, raw, harmonized, _ = st.transfer(tab, src, 0, 0, 48, 48, 40, 40, 0, 0, "local", 0.8, 0)
    v = _check_current(st, tab)
    assert v["harm_view"] == harmonized == st.files.png(tab.session.current) and v["raw_view"] == raw
    tab, *_ = st.undo(tab)                      # back before the paste: no stale previews
    v = _check_current(st, tab)
    assert v["raw_view"] is None and v["harm_view"] is None
    tab, *_ = st.redo(tab)                      # and again after a redo
    v = _check_current(st, tab)
    assert v["harm_view"] == harmonized and v["raw_view"] == raw

    # style
    tab, style_hr, *_ = st.style_transfer(tab, str(example_photo("rocket")), False, None)
    v = _check_current(st, tab)
    assert v["style_view"] == style_hr and v["harm_view"] is None

    tab, *_ = st.use_hr(tab)
    v = _check_current(st, tab)
    assert np.array_equal(tab.session.current, tab.session.hr) and v["style_view"] is None

    # restore (the astronaut after the cat): the current result is the restored image
    noisy = tmp_path / "noisy.png"
    a = np.asarray(Image.open(src).convert("RGB").resize((128, 128)), dtype=np.int16)
    rng = np.random.default_rng(0)
    Image.fromarray(np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)).save(noisy)
    tab, pair, plain, _ = st.restore(tab, str(noisy), 0.8, 0, "tiny")
    v = _check_current(st, tab)
    assert v["restore_view"] == pair and pair[1] == st.files.png(tab.session.current)
    assert v["sr_lr_view"] == plain
    tab, *_ = st.undo(tab)
    v = _check_current(st, tab)
    assert v["restore_view"] is None and v["sr_lr_view"] is None

    # a session file: previews of the old session are gone
    path = st.download_session(tab)
    tab, *_ = st.upload_session(tab, path, "tiny")
    v = _check_current(st, tab)
    assert all(v[n] is None for n in PREVIEWS)
