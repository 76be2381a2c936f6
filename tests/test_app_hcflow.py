"""The app with SRFlow and HCFlow models side by side, through gradio_client:
model switching, HCFlow editing, /rescale and /compare.

Models: the SRFlow fixture and the two HCFlow fixtures of tests/data
(tests/make_fixture.py).  A small --max-side keeps every request quick."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from app_testing import (HC_RESC, HC_SR, brush_layer, client, editor_value, example_photo, png_bytes, read,
                         running_app, save_png, tiny_model_path)

BOX = (8, 8, 40, 40)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import flow

    tmp = tmp_path_factory.mktemp("models")
    return {"tiny": flow.load_model(tiny_model_path(tmp), device="cpu"),
            "hc_sr": flow.load_model(HC_SR, device="cpu"),
            "hc_resc": flow.load_model(HC_RESC, device="cpu")}


@pytest.fixture(scope="module")
def demo(models):
    with running_app(models, max_side=32, queue_size=16, concurrency=1) as d:
        yield d


@pytest.fixture
def c(demo):
    return client(demo)


def load_photo(c, model, name="chelsea_cat"):
    from gradio_client import handle_file

    lr, cur, status = c.predict(handle_file(str(example_photo(name))), True, model, api_name="/load_image")
    return read(lr), status


def test_info_lists_both_families(c):
    info = c.predict(api_name="/info")
    assert info["models"]["tiny"]["family"] == "srflow" and info["models"]["tiny"]["local_edits"] is True
    assert info["models"]["hc_sr"] == {"family": "hcflow", "kind": "sr", "scale": 4,
                                       "arch": "hcflow_fixture_sr_4x", "local_edits": False}
    assert info["models"]["hc_resc"]["kind"] == "rescaling"


def test_hcflow_session_through_the_api(c, tmp_path):
    lr, status = load_photo(c, "hc_sr")
    assert lr.shape == (32, 32, 3) and "HCFlow model" in status and "re-decode the whole image" in status
    gal, cur, st = c.predict(0.8, 4, 2, api_name="/generate")
    before = read(cur)
    assert before.shape == (128, 128, 3) and len(gal) == 2
    info = c.predict(api_name="/info")
    assert info["model"] == "hc_sr" and info["family"] == "hcflow" and info["local_edits"] is False
    layer = brush_layer(before.shape[:2], BOX, tmp_path / "layer.png")
    out, st, nxt = c.predict(editor_value(save_png(before, tmp_path / "bg.png"), [layer]), 0.9, 5, 1,
                             api_name="/resample_region")
    after = read(out)
    assert "full decode" in st and "ℹ" in st and "finest latent level" in st, st
    d = np.abs(after.astype(int) - before).max(axis=2)
    assert d[8:40, 8:40].mean() > d[88:, 88:].mean(), (d[8:40, 8:40].mean(), d[88:, 88:].mean())
    out, st = c.predict(editor_value(save_png(after, tmp_path / "bg2.png"), [layer]), 1, 1,
                        api_name="/take_region")
    assert "ℹ" in st
    u, _ = c.predict(api_name="/undo")
    np.testing.assert_array_equal(read(u), after)
    out, st = c.predict("spatial", 0.8, 0, False, None, api_name="/normalize")
    assert "ℹ" not in st                               # a whole-image edit: nothing to explain


def test_hcflow_session_file_round_trip(demo):
    from gradio_client import handle_file

    a, b = client(demo), client(demo)
    load_photo(a, "hc_sr")
    _, cur, _ = a.predict(0.8, 2, 1, api_name="/generate")
    path = a.predict(api_name="/download_session")
    # uploaded with the SRFlow model selected: the app finds the HCFlow model it was made with
    lr, cur_b, model, st = b.predict(handle_file(path), "tiny", api_name="/upload_session")
    assert model == "hc_sr"
    np.testing.assert_array_equal(read(cur_b), read(cur))


def test_switching_models_keeps_the_input(c):
    lr, _ = load_photo(c, "tiny")
    _, cur_sr, _ = c.predict(0.8, 0, 1, api_name="/generate")
    lr2, cur, st = c.predict("hc_sr", api_name="/set_model")
    np.testing.assert_array_equal(read(lr2), lr)
    assert "hc_sr" in st and "HCFlow" in st
    _, cur_hc, _ = c.predict(0.8, 0, 1, api_name="/generate")
    assert read(cur_hc).shape == read(cur_sr).shape and not np.array_equal(read(cur_hc), read(cur_sr))
    assert c.predict(api_name="/info")["family"] == "hcflow"
    _, _, st = c.predict("tiny", api_name="/set_model")
    assert "HCFlow" not in st
    _, cur_back, _ = c.predict(0.8, 0, 1, api_name="/generate")
    np.testing.assert_array_equal(read(cur_back), read(cur_sr))       # same model, seed: same sample
    # the rescaling model can be selected too (with a note on what it is for)
    _, _, st = c.predict("hc_resc", api_name="/set_model")
    assert "rescaling model" in st
    _, cur, _ = c.predict(0.8, 0, 1, api_name="/generate")
    assert read(cur).shape == (128, 128, 3)


def test_restore_with_hcflow(c, tmp_path):
    from gradio_client import handle_file

    clean = read(example_photo("astronaut_face"))
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    pair, sr, st = c.predict(handle_file(save_png(noisy, tmp_path / "n.png")), 0.8, 0, "hc_sr",
                             api_name="/restore")
    assert read(pair[1]).shape == noisy.shape and not np.array_equal(read(pair[1]), noisy)
    assert c.predict(api_name="/info")["model"] == "hc_sr"


def test_compare(c):
    with pytest.raises(Exception, match="Load an image first"):
        c.predict("tiny", "hc_sr", 0.8, 0, api_name="/compare")
    load_photo(c, "tiny")
    a, b, st = c.predict("tiny", "hc_sr", 0.8, 3, api_name="/compare")
    a, b = read(a), read(b)
    assert a.shape == b.shape == (128, 128, 3) and not np.array_equal(a, b)
    assert "seed 3" in st and "SRFlow" in st and "HCFlow" in st and st.count("LR-PSNR") == 2
    assert st.count("PSNR") >= 4                       # LR-PSNR and PSNR (ground truth known) per model
    # A is exactly what the session gives for that seed and temperature with the same model
    _, cur, _ = c.predict(0.8, 3, 1, api_name="/generate")
    np.testing.assert_array_equal(read(cur), a)
    a2, b2, _ = c.predict(None, None, 0.8, 3, api_name="/compare")        # defaults: SRFlow vs HCFlow SR
    np.testing.assert_array_equal(read(a2), a)
    np.testing.assert_array_equal(read(b2), b)
    # compare reads the session but does not change it
    np.testing.assert_array_equal(read(c.predict(api_name="/download_png")), read(cur))
    with pytest.raises(Exception, match="not in the list of choices"):
        c.predict("tiny", "nope", 0.8, 0, api_name="/compare")


def test_rescale(c, models, tmp_path):
    from gradio_client import handle_file

    from app import engine
    from flow.ops.imresize import imresize, make_lr

    photo = read(example_photo("rocket"))[:102, :98]          # odd size: cropped to 100×96
    p = save_png(photo, tmp_path / "odd.png")
    lr, rec, sr, lr_file, metrics, st = c.predict(handle_file(p), "hc_resc", "tiny", api_name="/rescale")
    lr, rec, sr = read(lr), read(rec), read(sr)
    assert lr.shape == (25, 24, 3) and rec.shape == sr.shape == (100, 96, 3)
    np.testing.assert_array_equal(read(lr_file), lr)           # the downloadable PNG is the flow LR
    assert lr_file.endswith(".png")
    assert "cropped 98×102 to 96×100" in st
    if isinstance(metrics, str):
        metrics = json.loads(metrics)
    assert metrics["model"] == "hc_resc" and metrics["sr_model"] == "tiny" and metrics["hr_size"] == [100, 96]
    # the images are the engine's round trip of the cropped photo, unchanged by the app
    ref = engine.rescale(models["hc_resc"], photo, models["tiny"], "tiny")
    np.testing.assert_array_equal(lr, ref.flow_lr)
    np.testing.assert_array_equal(rec, ref.reconstruction)
    np.testing.assert_array_equal(sr, ref.sr_from_bicubic)
    # every reported PSNR is that of the returned images (recomputed here, not by flow.ops.metrics)
    hr = photo[:100, :96]

    def db(a, b):
        return 10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))

    bic_lr = make_lr(hr, 4)
    want = {"lr_psnr_flow_vs_bicubic": db(lr, bic_lr), "psnr_reconstruction": db(rec, hr),
            "psnr_sr_from_bicubic": db(sr, hr), "psnr_bicubic_up": db(imresize(bic_lr, 4.0), hr)}
    for k, v in want.items():
        assert metrics[k] == pytest.approx(v, abs=1e-3), (k, metrics)
    m = re.search(r"reconstruction vs HR: PSNR ([\d.]+) dB", st)
    assert m and float(m.group(1)) == pytest.approx(metrics["psnr_reconstruction"], abs=0.01)
    # defaults (empty model names): the first rescaling model, an SRFlow model for the comparison
    _, rec2, _, _, metrics2, _ = c.predict(handle_file(p), None, None, api_name="/rescale")
    np.testing.assert_array_equal(read(rec2), rec)


def test_rescale_inputs(c, tmp_path):
    from gradio_client import handle_file
    from test_app_inputs import rgb16_png

    photo = read(example_photo("coffee_cup"))                 # 128×128 = --max-side 32 × 4: no downsizing
    cases = {"gray.png": (png_bytes(photo[:64, :64, 0]), "grayscale"),
             "rgba.png": (png_bytes(np.dstack([photo[:64, :64], np.full((64, 64), 128, np.uint8)])), "white"),
             "rgb16.png": (rgb16_png(photo[:64, :64].astype(np.uint16) * 257), "rescaled a 64×64")}
    for name, (data, note) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        lr, rec, _, _, _, st = c.predict(handle_file(str(p)), "hc_resc", "tiny", api_name="/rescale")
        assert note in st, (name, st)
        assert read(lr).shape == (16, 16, 3) and read(rec).shape == (64, 64, 3)
    # a photo larger than --max-side × 4 is downsized first, with a note
    big = np.tile(photo, (2, 2, 1))                           # 256×256
    lr, rec, _, _, _, st = c.predict(handle_file(save_png(big, tmp_path / "big.png")), "hc_resc", None,
                                     api_name="/rescale")
    assert read(rec).shape == (128, 128, 3) and "⚠" in st
    with pytest.raises(Exception, match=r"hc_sr is not in the list of choices: \['hc_resc'\]"):
        c.predict(handle_file(str(tmp_path / "gray.png")), "hc_sr", None, api_name="/rescale")
    with pytest.raises(Exception, match="too small"):
        c.predict(handle_file(save_png(photo[:20, :20], tmp_path / "s.png")), "hc_resc", None,
                  api_name="/rescale")
    with pytest.raises(Exception, match="Upload the HR photo"):
        c.predict(None, "hc_resc", None, api_name="/rescale")


def test_rescale_without_a_rescaling_model(models):
    with running_app({"tiny": models["tiny"], "hc_sr": models["hc_sr"]}, max_side=32) as d:
        c = client(d)
        with pytest.raises(Exception, match="No rescaling model is loaded"):
            c.predict(None, None, None, api_name="/rescale")
        load_photo(c, "hc_sr")
        a, b, st = c.predict(None, None, 0.5, 1, api_name="/compare")   # defaults: tiny vs hc_sr
        assert read(a).shape == read(b).shape == (128, 128, 3) and "HCFlow" in st
