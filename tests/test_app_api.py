"""The app's API, driven by gradio_client against an app launched in-process.

Every action is checked for a real effect on the images, not just for an answer.
"""
from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

from app_testing import (TRAINED, brush_layer, client, editor_value, example_photo, read, running_app, save_png,
                         tiny_model_path)

ENDPOINTS = ["/load_image", "/load_example", "/set_model", "/generate", "/pick", "/resample_region",
             "/take_region", "/normalize", "/transfer", "/style_transfer", "/restore", "/undo", "/redo",
             "/download_png", "/download_session", "/upload_session", "/info", "/use_hr",
             "/set_lr_projection", "/rescale", "/compare"]

# brushed box in the top-left corner of a 128×128 result; "far" = the opposite corner
BOX = (8, 8, 40, 40)
FAR = (slice(88, 128), slice(88, 128))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import torch

    import flow

    tmp = tmp_path_factory.mktemp("models")
    m4 = flow.load_model(tiny_model_path(tmp), device="cpu")
    torch.manual_seed(1)
    p8 = tmp / "tiny_8x.safetensors"
    flow.save_safetensors(flow.SRFlow(flow.preset("tiny_8x")), p8)
    m8 = flow.load_model(p8, device="cpu")
    return {"tiny": m4, "tiny8": m8}


@pytest.fixture(scope="module")
def demo(models):
    with running_app(models, max_side=64, queue_size=16, concurrency=2) as d:
        yield d


@pytest.fixture
def c(demo):
    return client(demo)


def load_photo(c, name="chelsea_cat", model="tiny"):
    """Example photo as HR ("downscale first"): LR 32×32, HR 128×128 (ground truth)."""
    from gradio_client import handle_file

    lr, cur, status = c.predict(handle_file(str(example_photo(name))), True, model, api_name="/load_image")
    return read(lr), (read(cur) if cur else None), status


def gallery_images(gal):
    return [read(item["image"]) for item in gal]


def test_every_endpoint_is_named(c):
    api = c.view_api(print_info=False, return_format="dict")
    named = set(api["named_endpoints"])
    assert set(ENDPOINTS) <= named, set(ENDPOINTS) - named
    # the private view refresh and the UI-only helpers are not part of the API
    assert not any("views" in n or "select" in n or "preview" in n for n in named)
    # docs/API.md documents exactly these endpoints
    from app_testing import ROOT
    doc = (ROOT / "docs" / "API.md").read_text()
    table = [ln for ln in doc.splitlines() if ln.startswith("| `/")]
    documented = set(re.findall(r"`(/[a-z_]+)`", "\n".join(ln.split("|")[1] for ln in table)))
    assert documented == named, (documented ^ named)


def test_load_and_info(c):
    lr, cur, status = load_photo(c)
    assert lr.shape == (32, 32, 3)
    assert "ground truth available" in status and "4×" in status
    info = c.predict(api_name="/info")
    assert info["loaded"] and info["scale"] == 4 and info["lr_size"] == [32, 32]
    assert info["ground_truth"] is True
    # the bundled examples load the same way (index 0 = the first thumbnail)
    lr, cur, status = c.predict(0, True, "tiny", api_name="/load_example")
    assert read(lr).shape == (32, 32, 3) and "example" in status and cur is None
    assert "Generate" in status


def test_explore_generate_pick_reproducible(c):
    load_photo(c)
    gal, cur, status = c.predict(0.8, 7, 3, api_name="/generate")
    assert len(gal) == 3
    for item in gal:
        assert re.fullmatch(r"seed \d+ · LR-PSNR ([\d.]+ dB|∞ dB|n/a)", item["caption"]), item["caption"]
    imgs = gallery_images(gal)
    assert imgs[0].shape == (128, 128, 3)
    assert not np.array_equal(imgs[0], imgs[1])          # different seeds, different samples
    assert "LR-PSNR" in status
    # same seed again: the same samples, bit for bit
    gal2, _, _ = c.predict(0.8, 7, 3, api_name="/generate")
    for a, b in zip(imgs, gallery_images(gal2)):
        np.testing.assert_array_equal(a, b)
    # picking a sample makes it current
    cur2, status2 = c.predict(2, api_name="/pick")
    np.testing.assert_array_equal(read(cur2), imgs[2])
    # τ = 0 is deterministic whatever the seed
    g0, _, _ = c.predict(0.0, 1, 1, api_name="/generate")
    g1, _, _ = c.predict(0.0, 99, 1, api_name="/generate")
    np.testing.assert_array_equal(read(g0[0]["image"]), read(g1[0]["image"]))


def test_brush_resample_region_is_local(c, tmp_path):
    load_photo(c)
    _, cur, _ = c.predict(0.8, 0, 1, api_name="/generate")
    before = read(cur)
    bg = save_png(before, tmp_path / "bg.png")
    layer = brush_layer(before.shape[:2], BOX, tmp_path / "layer.png")
    out, status, next_seed = c.predict(editor_value(bg, [layer]), 0.9, 5, 1, api_name="/resample_region")
    after = read(out)
    y0, x0, y1, x1 = BOX
    inside = np.abs(after[y0:y1, x0:x1].astype(int) - before[y0:y1, x0:x1]).mean()
    far = np.abs(after[FAR].astype(int) - before[FAR]).max()
    assert inside > 1.0, inside                  # the brushed region changed
    assert far <= 1, far                         # far-away pixels did not
    assert next_seed == 6                         # the UI's seed moves on: next click, new variant
    assert "brushed" in status
    # the next click (next seed) gives another variant of the region
    out2, _, _ = c.predict(editor_value(bg, [layer]), 0.9, next_seed, 1, api_name="/resample_region")
    assert not np.array_equal(read(out2)[y0:y1, x0:x1], after[y0:y1, x0:x1])


def test_take_region_from_sample(c, tmp_path):
    load_photo(c)
    gal, cur, _ = c.predict(0.9, 11, 2, api_name="/generate")
    s0, s1 = gallery_images(gal)
    c.predict(0, api_name="/pick")
    layer = brush_layer(s0.shape[:2], BOX, tmp_path / "layer.png")
    out, status = c.predict(editor_value(save_png(s0, tmp_path / "bg.png"), [layer]), 1, 1,
                            api_name="/take_region")
    got = read(out)
    y0, x0, y1, x1 = BOX
    inner = (slice(y0 + 8, y1 - 8), slice(x0 + 8, x1 - 8))
    d_to_s1 = np.abs(got[inner].astype(int) - s1[inner]).mean()
    d_to_s0 = np.abs(got[inner].astype(int) - s0[inner]).mean()
    assert d_to_s1 < d_to_s0, (d_to_s1, d_to_s0)   # the region now comes from sample 1
    assert np.abs(got[FAR].astype(int) - s0[FAR]).max() <= 1   # the rest is still sample 0


def test_undo_redo_exact(c, tmp_path):
    load_photo(c)
    _, cur, _ = c.predict(0.8, 3, 1, api_name="/generate")
    before = read(cur)
    layer = brush_layer(before.shape[:2], BOX, tmp_path / "layer.png")
    out, _, _ = c.predict(editor_value(save_png(before, tmp_path / "bg.png"), [layer]), 0.9, 1, 1,
                          api_name="/resample_region")
    edited = read(out)
    assert not np.array_equal(edited, before)
    u, status = c.predict(api_name="/undo")
    np.testing.assert_array_equal(read(u), before)
    assert c.predict(api_name="/info")["can_redo"] is True
    r, _ = c.predict(api_name="/redo")
    np.testing.assert_array_equal(read(r), edited)
    # the downloaded PNG is exactly the current image
    png = c.predict(api_name="/download_png")
    assert png.endswith(".png")
    np.testing.assert_array_equal(read(png), edited)


def test_normalize(c):
    load_photo(c)
    _, cur, _ = c.predict(0.8, 4, 1, api_name="/generate")
    before = read(cur)
    outs = {}
    for mode in ("local", "spatial", "global"):
        c.predict(0, api_name="/pick")
        out, status = c.predict(mode, 0.8, 0, False, None, api_name="/normalize")
        outs[mode] = read(out)
        assert outs[mode].shape == before.shape
        assert not np.array_equal(outs[mode], before), mode
    # a different seed gives a different (equally plausible) result
    c.predict(0, api_name="/pick")
    out_b, _ = c.predict("local", 0.8, 1, False, None, api_name="/normalize")
    assert not np.array_equal(read(out_b), outs["local"])


def test_transfer_harmonize(c, tmp_path):
    from gradio_client import handle_file

    load_photo(c)
    _, cur, _ = c.predict(0.8, 2, 1, api_name="/generate")
    before = read(cur)
    src = example_photo("rocket")
    raw, harm, status = c.predict(handle_file(str(src)), 30, 50, 78, 98, 64, 64, 48, 48, "local", 0.8, 0,
                                  api_name="/transfer")
    raw, harm = read(raw), read(harm)
    assert raw.shape == harm.shape == before.shape
    # the paste landed in the destination box, the rest of the raw image is untouched
    assert np.abs(raw[64:112, 64:112].astype(int) - before[64:112, 64:112]).mean() > 5
    np.testing.assert_array_equal(raw[:48, :48], before[:48, :48])
    assert not np.array_equal(harm, raw)                # harmonization changed the paste
    m = re.search(r"LR-PSNR raw paste ([\d.]+) dB → harmonized ([\d.]+) dB", status)
    assert m, status
    if TRAINED.is_file():        # a trained model pulls the paste back towards LR consistency
        assert float(m.group(2)) > float(m.group(1)) + 1, status
    # the ground truth can be the target too (HR image y with x = D(y))
    cur_gt, st_gt = c.predict(api_name="/use_hr")
    assert "ground truth" in st_gt
    raw2, harm2, status2 = c.predict(handle_file(str(src)), 30, 50, 78, 98, 0, 0, 0, 0, "spatial", 0.8, 1,
                                     api_name="/transfer")
    np.testing.assert_array_equal(read(raw2)[64:], read(cur_gt)[64:])   # pasted at the top left only
    info = c.predict(api_name="/info")
    assert info["can_undo"]


def test_style_transfer(c):
    from gradio_client import handle_file

    load_photo(c)
    _, cur, _ = c.predict(0.8, 2, 1, api_name="/generate")
    before = read(cur)
    style_hr, out, status = c.predict(handle_file(str(example_photo("coffee_cup"))), False, None,
                                      api_name="/style_transfer")
    out = read(out)
    assert read(style_hr).shape == before.shape == out.shape
    assert not np.array_equal(out, before)
    assert "⚠" not in status and "encoded at" in status          # no guard warnings; the style was encoded
    # a repeat uses the session's cached style statistics and gives the same image
    c.predict(api_name="/undo")
    _, out2, status2 = c.predict(handle_file(str(example_photo("coffee_cup"))), False, None,
                                 api_name="/style_transfer")
    assert "cached style statistics" in status2 and "⚠" not in status2
    np.testing.assert_array_equal(read(out2), out)


def test_restore(c, tmp_path):
    from gradio_client import handle_file

    load_photo(c)
    clean = read(example_photo("astronaut_face"))
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    p = save_png(noisy, tmp_path / "noisy.png")
    pair, sr_from_lr, status = c.predict(handle_file(p), 0.8, 0, "tiny", api_name="/restore")
    inp, restored = read(pair[0]), read(pair[1])
    np.testing.assert_array_equal(inp, noisy)
    assert restored.shape == noisy.shape
    assert not np.array_equal(restored, noisy)
    assert read(sr_from_lr).shape == noisy.shape


def test_restore_without_a_session(demo, tmp_path):
    from gradio_client import handle_file

    c = client(demo)
    p = save_png(read(example_photo("rocket")), tmp_path / "photo.png")
    pair, _, status = c.predict(handle_file(p), 0.5, 0, "tiny", api_name="/restore")
    assert read(pair[1]).shape == (128, 128, 3) and "SSIM" not in status   # no ground truth
    info = c.predict(api_name="/info")
    assert info["loaded"] and info["lr_size"] == [32, 32] and info["ground_truth"] is False


def test_session_download_upload_roundtrip(demo, tmp_path):
    from gradio_client import handle_file

    a, b = client(demo), client(demo)
    load_photo(a)
    _, cur, _ = a.predict(0.8, 9, 2, api_name="/generate")
    cur = read(cur)
    path = a.predict(api_name="/download_session")
    assert path.endswith(".srflow")
    lr, cur_b, model, status = b.predict(handle_file(path), "tiny", api_name="/upload_session")
    assert model == "tiny"
    np.testing.assert_array_equal(read(cur_b), cur)
    assert len(b.predict(api_name="/info")["gallery"]) == 2
    # b's session is now its own copy: editing it leaves a's alone
    b.predict(1, api_name="/pick")
    np.testing.assert_array_equal(read(a.predict(api_name="/download_png")), cur)
    # a session file made for another model is recognised and loaded with that model
    lr8, _, _ = load_photo(a, model="tiny8")
    path8 = a.predict(api_name="/download_session")
    _, _, model, status = b.predict(handle_file(path8), "tiny", api_name="/upload_session")
    assert model == "tiny8" and "tiny8" in status


def test_two_clients_are_independent(demo, tmp_path):
    a, b = client(demo), client(demo)
    load_photo(a, "chelsea_cat")
    load_photo(b, "rocket")
    _, cur_b, _ = b.predict(0.8, 1, 1, api_name="/generate")
    cur_b = read(cur_b)
    errors = []

    def work_a():
        try:
            _, cur_a, _ = a.predict(0.8, 2, 3, api_name="/generate")
            bg = save_png(read(cur_a), tmp_path / "a_bg.png")
            layer = brush_layer((128, 128), BOX, tmp_path / "a_layer.png")
            a.predict(editor_value(bg, [layer]), 0.9, 3, 1, api_name="/resample_region")
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def work_b():
        try:
            for _ in range(3):
                np.testing.assert_array_equal(read(b.predict(api_name="/download_png")), cur_b)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=work_a), threading.Thread(target=work_b)]
    [t.start() for t in ts]
    [t.join(120) for t in ts]
    assert not errors, errors
    info_a, info_b = a.predict(api_name="/info"), b.predict(api_name="/info")
    assert len(info_a["gallery"]) == 3 and len(info_b["gallery"]) == 1
    np.testing.assert_array_equal(read(b.predict(api_name="/download_png")), cur_b)
    # a fresh client has no session at all
    assert client(demo).predict(api_name="/info")["loaded"] is False


def test_two_concurrent_requests_from_one_tab(demo, tmp_path, monkeypatch):
    """Two requests of one tab at once (the server runs two at a time): a long generate, and
    a region resample sent while it runs.  The tab's lock makes the resample wait: both
    succeed, in the order sent, and the result is that of the two applied one after the
    other (unserialised, the resample would edit the state the generate is replacing)."""
    from app.session import EditSession

    generate = EditSession.generate

    def long_generate(self, *args, **kw):
        time.sleep(1.5)
        return generate(self, *args, **kw)

    c = client(demo)
    load_photo(c)
    _, cur0, _ = c.predict(0.8, 4, 1, api_name="/generate")
    cur0 = read(cur0)
    bg = save_png(cur0, tmp_path / "bg.png")
    layer = brush_layer((128, 128), BOX, tmp_path / "layer.png")
    ops = {"generate": ((0.9, 21, 16), "/generate"),
           "resample_region": ((editor_value(bg, [layer]), 0.9, 12, 1), "/resample_region")}
    monkeypatch.setattr(EditSession, "generate", long_generate)
    jobs = [c.submit(*ops["generate"][0], api_name="/generate")]
    time.sleep(0.5)
    jobs.append(c.submit(*ops["resample_region"][0], api_name="/resample_region"))   # while it runs
    for j in jobs:
        j.result(timeout=300)
    monkeypatch.undo()
    order = [e["op"] for e in c.predict(api_name="/info")["log"]][-2:]
    assert order == ["generate", "resample_region"]
    final = read(c.predict(api_name="/download_png"))
    ref = client(demo)                                          # the same, one after the other
    load_photo(ref)
    ref.predict(0.8, 4, 1, api_name="/generate")
    for op in order:
        args, api = ops[op]
        ref.predict(*args, api_name=api)
    np.testing.assert_array_equal(read(ref.predict(api_name="/download_png")), final)
    c.predict(api_name="/undo")
    back, _ = c.predict(api_name="/undo")
    np.testing.assert_array_equal(read(back), cur0)


def test_prune_removes_only_stale_images(tmp_path):
    """The app's image files: an image not touched for the age limit is pruned, a fresh one or
    one shown again (touched) is kept; pruning runs by itself every PRUNE_EVERY new files."""
    import os
    import time

    from app.ui.views import ImageFiles

    files = ImageFiles(tmp_path)
    imgs = [np.full((4, 4, 3), v, np.uint8) for v in range(5)]
    old, shown, fresh = (files.png(i) for i in imgs[:3])
    long_ago = time.time() - ImageFiles.MAX_AGE_S - 60
    for p in (old, shown):
        os.utime(p, (long_ago, long_ago))
    assert files.png(imgs[1]) == shown                     # shown again: the same file, touched
    ImageFiles.prune(tmp_path / "img")
    assert not os.path.exists(old) and os.path.exists(shown) and os.path.exists(fresh)
    assert files.png(imgs[0]) == old and os.path.exists(old)  # written again when needed
    os.utime(old, (long_ago, long_ago))
    files.PRUNE_EVERY = files.written + 1                  # the next new file triggers a prune
    files.png(imgs[3])
    assert not os.path.exists(old) and os.path.exists(fresh)
    files.png(imgs[4])
    assert len(list((tmp_path / "img").glob("*.png"))) == 4
    assert not list((tmp_path / "img").glob("*.tmp"))


def test_set_model_switches_scale(c):
    load_photo(c)
    lr, cur, status = c.predict("tiny8", api_name="/set_model")
    assert "8×" in status and "tiny8" in status
    info = c.predict(api_name="/info")
    assert info["scale"] == 8 and info["lr_size"] == [16, 16]
    _, cur, _ = c.predict(0.5, 0, 1, api_name="/generate")
    assert read(cur).shape == (128, 128, 3)


def test_models_stay_read_only(demo, models, tmp_path):
    """After a full round of edits by clients, every value of the shared models' weights and
    buffers is untouched (compared in full, not by a fingerprint), and they stay in eval mode."""
    import torch

    before = {n: {k: v.detach().clone() for k, v in m.state_dict().items()} for n, m in models.items()}
    c = client(demo)
    load_photo(c)
    c.predict(0.8, 0, 2, api_name="/generate")
    c.predict("global", 0.8, 0, False, None, api_name="/normalize")
    c.predict("tiny8", api_name="/set_model")
    c.predict(0.8, 1, 1, api_name="/generate")
    c.predict(api_name="/undo")
    for n, m in models.items():
        after = m.state_dict()
        assert after.keys() == before[n].keys()
        for k, v in after.items():
            assert torch.equal(v, before[n][k]), (n, k)
    assert all(not m.training for m in models.values())
    assert all(not p.requires_grad or p.grad is None for m in models.values() for p in m.parameters())


def test_hosting_settings(demo):
    """Queue limits as configured; one session object per tab, never at module level."""
    import app.ui as ui

    assert demo._queue.max_size == 16 and demo._queue.default_concurrency_limit == 2
    st = demo.studio
    assert st.max_side == 64 and st.history_kw["max_history_bytes"] == 256 * 2**20
    for mod in (ui, ui.handlers, ui.layout, ui.views):
        assert not [k for k, v in vars(mod).items() if isinstance(v, ui.TabState)], mod
    # the state starts empty in every new tab
    a, b = client(demo), client(demo)
    load_photo(a)
    assert b.predict(api_name="/info")["loaded"] is False


def test_server_files_not_exposed(demo):
    import httpx

    base = demo.local_url.rstrip("/")
    for p in ["/etc/passwd", str(example_photo()), __file__, str(demo.studio.out_dir)]:
        r = httpx.get(f"{base}/gradio_api/file={p}")
        assert r.status_code in (403, 404), (p, r.status_code)


def test_exact_lr_projection(c):
    load_photo(c)
    _, _, plain = c.predict(0.9, 5, 1, api_name="/generate")
    lr_plain = float(re.search(r"LR-PSNR ([\d.]+) dB", plain).group(1))
    assert "α = 1" in c.predict(1.0, api_name="/set_lr_projection")
    _, _, projected = c.predict(0.9, 5, 1, api_name="/generate")
    m = re.search(r"LR-PSNR ([\d.]+) dB \(without the LR projection ([\d.]+) dB\)", projected)
    assert m, projected
    assert float(m.group(1)) > 45 and float(m.group(1)) > lr_plain + 5
    assert abs(float(m.group(2)) - lr_plain) < 0.01          # same sample before the projection
    # a new image in the same tab keeps the setting; α = 0 turns it off
    load_photo(c, "rocket")
    _, _, st = c.predict(0.9, 5, 1, api_name="/generate")
    assert "without the LR projection" in st
    c.predict(0.0, api_name="/set_lr_projection")
    _, _, st = c.predict(0.9, 5, 1, api_name="/generate")
    assert "without the LR projection" not in st
