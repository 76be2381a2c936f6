"""The editing session (app/session/) and the editing engine (flow/editing/) on an
HCFlow SR model: every session op, the full-image fallbacks of the windowed
decode/encode, and what the results say about HCFlow's global region edits.

Model: ``tests/data/tiny_hcflow_sr_4x.safetensors`` (tests/make_fixture.py --hcflow)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.models import describe  # noqa: E402
from app.session import GLOBAL_EDIT_NOTE, EditSession, SessionFileError  # noqa: E402
from flow import editing as E  # noqa: E402
from flow import load_model  # noqa: E402
from flow.data import make_lr, to_tensor  # noqa: E402
from flow import HCFlow  # noqa: E402
from flow.ops.metrics import lr_psnr  # noqa: E402

from app_testing import full_decode, photo_crops, square  # noqa: E402

torch.set_num_threads(1)
DATA = Path(__file__).parent / "data"
HC_SR = DATA / "tiny_hcflow_sr_4x.safetensors"
HC_RESC = DATA / "tiny_hcflow_rescaling_4x.safetensors"
SRFLOW = DATA / "tiny_trained_4x.safetensors"
S = 96


@pytest.fixture(scope="module")
def model():
    return load_model(HC_SR, device="cpu")


@pytest.fixture(scope="module")
def photos():
    return photo_crops(S, ("astro", "coffee"))


@pytest.fixture
def session(model, photos):
    s = EditSession.from_hr(model, photos["astro"])
    s.generate(temperature=0.8, seed=0, n=2)
    return s


def to_u8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def same_outside(a, b, masks):
    """Latents ``a`` and ``b`` are equal outside the level masks."""
    return all(torch.equal(x[..., ~m], y[..., ~m]) for x, y, m in zip(a.levels, b.levels, masks))


# ------------------------------------------------------------------- fixtures

def test_fixtures_are_small_hcflow_models(model):
    for p in (HC_SR, HC_RESC):
        assert p.stat().st_size < 2 * 2**20, p
    resc = load_model(HC_RESC, device="cpu")
    assert isinstance(model, HCFlow) and isinstance(resc, HCFlow)
    assert describe("a", model).as_dict() == {"family": "hcflow", "kind": "sr", "scale": 4,
                                              "arch": model.cfg.name, "local_edits": False}
    assert describe("b", resc).kind == "rescaling"
    assert describe("c", load_model(SRFLOW, device="cpu")).as_dict()["local_edits"] is True


def test_fixture_gives_lr_consistent_samples(model, photos):
    """The fixture is trained a little: its samples are image-like, not noise."""
    s = EditSession.from_hr(model, photos["astro"])
    r = s.generate(0.8, 0, 1)
    assert r.metrics["lr_psnr"] > 22, r.metrics
    assert r.metrics["psnr"] > 16, r.metrics


def test_total_stride_property(model):
    sr = load_model(SRFLOW, device="cpu")
    assert sr.total_stride == sr.flowUpsamplerNet.total_stride == 8      # tiny_4x: L = 3
    assert model.total_stride == 4 and not model.supports_region and sr.supports_region


# ------------------------------------------------------------------- windows without a local decode

@torch.no_grad()
def test_window_decode_and_encode_see_the_whole_image(model, photos):
    """HCFlow's coarse latents act globally, so its window decode/encode must see the
    whole image: a level-1 latent outside the window changes the window's pixels, and
    pixels outside the window change the window's latents, and both equal the crop of
    the whole-image result exactly (a decode or encode of the window alone would not)."""
    lr = make_lr(photos["astro"], 4)
    cond = model.encode_condition(to_tensor(lr)[None])
    lat = model.draw_latents(cond, 0.8, 3, 1)
    box = (16, 64, 32, 96)
    win = E.decode_window(model, cond, lat, box)
    np.testing.assert_array_equal(win.numpy(), model.decode(cond, lat)[..., 16:64, 32:96].numpy())
    far = lat.clone()
    far.levels[1][..., 3, 6] += 2.0                         # HR (12..16, 24..28): just outside the box
    assert (E.decode_window(model, cond, far, box) - win).abs().max() > 1e-4
    hr = to_tensor(photos["astro"])[None]
    enc = E.encode_window(model, cond, E.pad_hr(model, cond, hr), box)
    full, _ = model.encode(hr, cond)
    for t, w, s in zip(full.levels, enc, full.strides):
        torch.testing.assert_close(w, t[..., 16 // s:64 // s, 32 // s:96 // s], rtol=0, atol=1e-6)
    hr2 = hr.clone()
    hr2[..., 80:, :16] = 1.0 - hr2[..., 80:, :16]           # outside the box
    enc2 = E.encode_window(model, cond, hr2, box)
    assert any((a - b).abs().max() > 1e-4 for a, b in zip(enc, enc2))


@torch.no_grad()
def test_content_transfer_uses_the_whole_image_encoding(model, photos):
    """Inside the paste's latents: the whole-image encoding of the pasted image, locally
    normalized, i.e. every local collection (channels at one position) is a positive
    affine map of that encoding's collection with the drawn mean; outside: unchanged."""
    lr = make_lr(photos["astro"], 4)
    cond = model.encode_condition(to_tensor(lr)[None])
    lat = model.draw_latents(cond, 0.8, 0, 1)
    pasted = photos["astro"].copy()
    pasted[40:72, 40:72] = photos["coffee"][:32, :32]
    m = square((S, S), 40, 40, 32)
    new, masks = E.content_transfer(model, cond, lat, to_tensor(pasted)[None], m, "local", 0.8, 0, 1)
    assert same_outside(new, lat, masks)
    enc, _ = model.encode(to_tensor(pasted)[None], cond)
    rng = np.random.default_rng(0)
    for a, e, mk in zip(new.levels, enc.levels, masks):
        got = a[0][:, mk].T.double()                        # (positions, channels)
        ref = e[0][:, mk].T.double()
        z = lambda v: (v - v.mean(1, keepdim=True)) / v.std(1, keepdim=True)   # noqa: E731
        torch.testing.assert_close(z(got), z(ref), rtol=0, atol=1e-4)
        mu = rng.normal(0, 0.8 / np.sqrt(got.shape[1]), size=got.shape[0])    # eq. 6, drawn per level
        rng.gamma((got.shape[1] - 1) / 2.0, 2 * 0.64 / (got.shape[1] - 1), size=got.shape[0])
        np.testing.assert_allclose(got.mean(1).numpy(), mu, atol=1e-5)


# ------------------------------------------------------------------- session ops

def test_generate_and_pick(session, model, photos):
    s = session
    assert [g.seed for g in s.gallery] == [0, 1]
    with torch.no_grad():
        ref = model.sample(to_tensor(s.lr)[None], 0.8, 1)
    np.testing.assert_array_equal(s.gallery[1].image, to_u8(ref[0].permute(1, 2, 0).numpy()))
    r = s.pick(1)
    np.testing.assert_array_equal(r.image, s.gallery[1].image)
    assert r.notes == []


def test_resample_region_decodes_whole_image_and_says_so(session):
    s = session
    before, lat0 = s.current.copy(), s.latents
    m = square((S, S), 8, 8, 24)
    r = s.resample_region(m, temperature=0.9, seed=5, dilation=1)
    assert "full decode" in r.changed and r.notes == [GLOBAL_EDIT_NOTE]
    assert s.log[-1]["notes"] == [GLOBAL_EDIT_NOTE]
    masks = E.level_masks(m, lat0, dilation=1)
    assert same_outside(s.latents, lat0, masks)
    assert not all(torch.equal(a, b) for a, b in zip(s.latents.levels, lat0.levels))
    # the whole image was decoded: the current image is exactly the full decode
    np.testing.assert_array_equal(s.current, to_u8(full_decode(s)))
    d = np.abs(r.image.astype(int) - before).max(axis=2)
    assert d[8:32, 8:32].mean() > 2 * max(d[64:, 64:].mean(), 0.05)   # mostly changed where brushed
    # same seed again from the same state: the same image
    s.undo()
    np.testing.assert_array_equal(s.current, before)
    r2 = s.resample_region(m, temperature=0.9, seed=5, dilation=1)
    np.testing.assert_array_equal(r2.image, r.image)


def test_only_finest_level_edits_are_local(session):
    """Resampling only level-0 latents changes pixels only near their footprints;
    the coarser level reaches further (this is what the notes tell the user)."""
    s = session
    lat = s.latents
    m = square((S, S), 40, 40, 16)
    masks = E.level_masks(m, lat, dilation=0)
    with torch.no_grad():
        base = s.model.decode(s.cond, lat)[0]
        fine = E.resample_region(lat, [masks[0], torch.zeros_like(masks[1])], 1.0, 7)
        coarse = E.resample_region(lat, [torch.zeros_like(masks[0]), masks[1]], 1.0, 7)
        d_fine = (s.model.decode(s.cond, fine)[0] - base).abs().amax(0)
        d_coarse = (s.model.decode(s.cond, coarse)[0] - base).abs().amax(0)
    ring = torch.ones(S, S, dtype=torch.bool)
    ring[24:72, 24:72] = False                         # farther than 16 px from the square
    assert d_fine[40:56, 40:56].mean() > 0.01
    assert d_fine[ring].max() < 1e-5                   # level 0: local
    assert d_coarse[ring].max() > d_fine[ring].max()   # level 1: reaches further


def test_take_region_and_normalize(session):
    s = session
    g1 = s.gallery[1].latents
    m = square((S, S), 48, 8, 24)
    r = s.take_region_from(1, m, dilation=0)
    masks = E.level_masks(m, s.latents, dilation=0)
    for a, b, mk in zip(s.latents.levels, g1.levels, masks):
        assert torch.equal(a[..., mk], b[..., mk])
    assert r.notes == [GLOBAL_EDIT_NOTE]
    for mode in ("global", "local", "spatial"):
        before = s.current.copy()
        r = s.normalize(mode, 0.8, 0)
        assert r.notes == [] and "full decode" in r.changed
        assert not np.array_equal(r.image, before), mode
    r = s.normalize("local", 0.8, 1, mask=m)
    assert r.notes == [GLOBAL_EDIT_NOTE] and "inside the mask" in r.changed


def test_transfer_style_restore_use_hr(session, photos):
    s = session
    r = s.transfer(photos["coffee"], (10, 10, 42, 42), (40, 40), (32, 32), mode="local", temperature=0.8, seed=0)
    assert r.notes == [GLOBAL_EDIT_NOTE]
    raw, harm = r.extra["raw"], r.image
    assert not np.array_equal(raw, harm)
    assert r.extra["raw_lr_psnr"] == pytest.approx(lr_psnr(raw, s.lr, 4), abs=1e-6)
    r = s.style_transfer(photos["coffee"])
    assert r.notes == [] and r.extra["style_hr"].shape == (S, S, 3)
    r2 = s.style_transfer(photos["coffee"], mask=square((S, S), 0, 0, 32))
    assert r2.notes == [GLOBAL_EDIT_NOTE]
    gen = s.generate(0.8, 3, 1)
    r = s.use_hr()
    assert r.notes and "HCFlow" in r.notes[0]
    assert r.metrics["psnr"] > gen.metrics["psnr"] + 3       # the encoded ground truth, decoded
    old_lr = s.lr.copy()
    rng = np.random.default_rng(0)
    noisy = np.clip(photos["coffee"] + rng.normal(0, 15, photos["coffee"].shape), 0, 255).astype(np.uint8)
    r = s.restore(noisy, 0.8, 0)
    assert not np.array_equal(s.lr, old_lr) and s.gallery == []
    assert r.extra["sr_from_lr"].shape == (S, S, 3)
    s.undo()
    np.testing.assert_array_equal(s.lr, old_lr)
    s.redo()
    assert not np.array_equal(s.lr, old_lr)


def test_undo_redo_and_session_files(session, model, tmp_path):
    s = session
    states = [s.current.copy()]
    s.resample_region(square((S, S), 0, 0, 16), 0.9, 1)
    states.append(s.current.copy())
    s.normalize("spatial", 0.8, 2)
    states.append(s.current.copy())
    for k in (1, 0):
        np.testing.assert_array_equal(s.undo().image, states[k])
    for k in (1, 2):
        np.testing.assert_array_equal(s.redo().image, states[k])
    p = tmp_path / "hc.srflow"
    s.save(p)
    t = EditSession.load(p, model)
    np.testing.assert_array_equal(t.current, s.current)
    assert t.latents.equal(s.latents) and len(t.gallery) == len(s.gallery)
    # the loaded session keeps editing, with the same result as the original
    a = s.resample_region(square((S, S), 60, 60, 16), 0.7, 9).image
    b = t.resample_region(square((S, S), 60, 60, 16), 0.7, 9).image
    np.testing.assert_array_equal(a, b)
    with pytest.raises(SessionFileError, match="another model"):
        EditSession.load(p, load_model(SRFLOW, device="cpu"))


def test_odd_lr_size(model):
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (13, 19, 3), dtype=np.uint8)
    s = EditSession(model, lr)
    r = s.generate(0.5, 0, 1)
    assert r.image.shape == (52, 76, 3)
    r = s.resample_region(square((52, 76), 4, 4, 9), 0.8, 0)
    assert r.image.shape == (52, 76, 3)
