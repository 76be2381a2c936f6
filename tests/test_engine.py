"""app/engine.py (rescaling round trip, model comparison) and app/models.py (registry)
with the small fixtures in tests/data."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import engine, models as registry  # noqa: E402
from flow import load_model  # noqa: E402
from flow.data import heldout_images, make_lr, to_tensor  # noqa: E402
from flow.ops.images import to_uint8  # noqa: E402
from flow.ops.imresize import imresize  # noqa: E402
from flow.ops.metrics import lr_psnr, psnr  # noqa: E402

torch.set_num_threads(1)
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def fx():
    return {"srflow": load_model(DATA / "tiny_trained_4x.safetensors", device="cpu"),
            "hc_sr": load_model(DATA / "tiny_hcflow_sr_4x.safetensors", device="cpu"),
            "hc_resc": load_model(DATA / "tiny_hcflow_rescaling_4x.safetensors", device="cpu")}


@pytest.fixture(scope="module")
def photo():
    return heldout_images(("astronaut",), crop=None)["astronaut"][30:30 + 70, 140:140 + 93].copy()


def _psnr(a, b) -> float:
    """PSNR of uint8 images, written out here (independent of flow.ops.metrics)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


def test_rescale_round_trip(fx, photo):
    m = fx["hc_resc"]
    r = engine.rescale(m, photo, fx["srflow"], "srflow")
    assert r.hr.shape == (68, 92, 3) and r.notes and "cropped 93×70 to 92×68" in r.notes[0]
    np.testing.assert_array_equal(r.hr, photo[:68, :92])
    assert r.flow_lr.shape == r.bicubic_lr.shape == (17, 23, 3)
    assert r.reconstruction.shape == r.sr_from_bicubic.shape == (68, 92, 3)
    np.testing.assert_array_equal(r.bicubic_lr, make_lr(r.hr, 4))
    # the references, computed another way than the engine does: the flow LR is the 8-bit
    # encode's top level y (the engine uses model.downscale); the reconstructions are the
    # tau = 0 decodes (zero latents) of that LR and of the bicubic LR (the engine samples)
    with torch.no_grad():
        lat, _ = m.encode(to_tensor(r.hr)[None])
        y8 = torch.round(lat.top[0].clamp(0, 1) * 255).permute(1, 2, 0).numpy().astype(np.uint8)   # 8-bit LR
        lr_q = torch.from_numpy(y8).permute(2, 0, 1)[None].float() / 255
        rec = m.decode(lr_q, [torch.zeros_like(t) for t in lat.levels]).clamp(0, 1)
        sm = fx["srflow"]
        cond = sm.encode_condition(to_tensor(r.bicubic_lr)[None])
        sr = sm.decode(cond, [torch.zeros((1,) + tuple(s)) for s in sm.latent_shapes(*cond.padded_hr_size)])
    np.testing.assert_array_equal(r.flow_lr, y8)
    assert np.abs(r.reconstruction.astype(int) - to_uint8(rec).astype(int)).max() <= 1
    assert np.abs(r.sr_from_bicubic.astype(int) - to_uint8(sr).astype(int)).max() <= 1
    mt = r.metrics
    assert mt["lr_psnr_flow_vs_bicubic"] == pytest.approx(_psnr(r.flow_lr, r.bicubic_lr))
    assert mt["psnr_reconstruction"] == pytest.approx(_psnr(r.reconstruction, r.hr))
    assert mt["psnr_sr_from_bicubic"] == pytest.approx(_psnr(r.sr_from_bicubic, r.hr))
    assert mt["psnr_bicubic_up"] == pytest.approx(_psnr(imresize(r.bicubic_lr, 4.0), r.hr))
    assert mt["lr_psnr_reconstruction"] == pytest.approx(_psnr(make_lr(r.reconstruction, 4), r.flow_lr))
    assert mt["sr_model"] == "srflow"
    # the (briefly trained) rescaler's LR is close to bicubic and its reconstruction is image-like
    assert mt["lr_psnr_flow_vs_bicubic"] > 20 and mt["psnr_reconstruction"] > 15, mt
    assert not r.warnings


def test_rescale_inputs(fx, photo):
    m = fx["hc_resc"]
    r = engine.rescale(m, photo[:64, :64])          # no SR model, no crop
    assert r.notes == [] and r.sr_from_bicubic is None and "psnr_sr_from_bicubic" not in r.metrics
    g = engine.rescale(m, photo[:64, :64, 0])       # grayscale HxW
    assert g.flow_lr.shape == (16, 16, 3)
    rgba = np.dstack([photo[:64, :64], np.full((64, 64), 255, np.uint8)])
    np.testing.assert_array_equal(engine.rescale(m, rgba).reconstruction, r.reconstruction)
    with pytest.raises(ValueError, match="not a rescaling model"):
        engine.rescale(fx["hc_sr"], photo)
    with pytest.raises(ValueError, match="not a rescaling model"):
        engine.rescale(fx["srflow"], photo)
    with pytest.raises(ValueError, match="at least 32×32"):
        engine.rescale(m, photo[:31, :40])
    with pytest.raises(ValueError, match="uint8"):
        engine.rescale(m, photo.astype(np.uint16))


def test_compare_same_seed_and_temperature(fx, photo):
    hr = photo[:64, :64]
    lr = make_lr(hr, 4)
    items = engine.compare({"a": fx["srflow"], "b": fx["hc_sr"]}, lr, hr, 0.8, 3)
    assert [it.name for it in items] == ["a", "b"]
    assert [it.info.family for it in items] == ["srflow", "hcflow"]
    for it, m in zip(items, (fx["srflow"], fx["hc_sr"])):
        with torch.no_grad():
            ref = to_uint8(m.sample(to_tensor(lr)[None], 0.8, 3)[0])
        np.testing.assert_array_equal(it.image, ref)          # each model's own seeded sample
        assert it.metrics["lr_psnr"] == pytest.approx(min(lr_psnr(it.image, lr, 4), 100.0))
        assert it.metrics["psnr"] == pytest.approx(psnr(it.image, hr))
    assert not np.array_equal(items[0].image, items[1].image)
    again = engine.compare({"b": fx["hc_sr"]}, lr, None, 0.8, 3)
    np.testing.assert_array_equal(again[0].image, items[1].image)
    assert "psnr" not in again[0].metrics                         # no ground truth given


def test_compare_errors(fx):
    import flow

    lr = np.zeros((16, 16, 3), np.uint8)
    torch.manual_seed(0)
    m8 = flow.SRFlow(flow.preset("tiny_8x")).eval()
    with pytest.raises(ValueError, match="same scale"):
        engine.compare({"a": fx["srflow"], "b": m8}, lr)
    with pytest.raises(ValueError, match="at least one model"):
        engine.compare({}, lr)
    with pytest.raises(ValueError, match="seed"):
        engine.compare({"a": fx["hc_sr"]}, lr, seed=-1)


def test_registry(fx, tmp_path, monkeypatch):
    labels = {n: registry.describe(n, m).label for n, m in fx.items()}
    assert labels == {"srflow": "srflow · SRFlow · 4×", "hc_sr": "hc_sr · HCFlow · 4×",
                      "hc_resc": "hc_resc · HCFlow rescaling · 4×"}
    a, b, c = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "c.safetensors"
    monkeypatch.setattr(registry, "SHIPPED", {"a": a, "b": b, "c": c})
    assert registry.shipped_paths() == [a]                       # required first, even when missing
    c.write_bytes(b"x")
    assert registry.shipped_paths() == [a, c]                    # optional ones only when present
    assert registry.shipped_paths(b) == [b, c]
