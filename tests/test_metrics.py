"""Tests for flow.ops.metrics against hand-computed values on tiny images."""
import math

import numpy as np
import pytest

from flow.ops.imresize import imresize
from flow.ops.metrics import (ALEXNET_CHECKPOINT, LpipsMetric, diversity_score,
                          lr_psnr, mse_diversity, mse_maps, ntire_lr_psnr,
                          pixel_std_diversity, psnr, psnr_y, rgb_to_y, ssim)


def _const(v, h=16, w=16):
    return np.full((h, w, 3), v, np.uint8)


def test_psnr_known_mse_and_skimage():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[1, 2, 0] = 16  # MSE = 256 / 48
    assert psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 * 48 / 256), abs=1e-12)
    from skimage.metrics import peak_signal_noise_ratio

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    y = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    assert psnr(x, y) == pytest.approx(peak_signal_noise_ratio(x, y), abs=1e-10)


def test_psnr_identical_is_inf():
    x = np.random.default_rng(1).integers(0, 256, (5, 5, 3), dtype=np.uint8)
    assert psnr(x, x.copy()) == float("inf")


def test_ssim_matches_skimage_and_identity():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    y = np.clip(x.astype(int) + rng.integers(-20, 21, x.shape), 0, 255).astype(np.uint8)
    assert ssim(x, y) == pytest.approx(structural_similarity(x, y, channel_axis=-1))
    assert ssim(x, x) == pytest.approx(1.0)
    assert ssim(x, y) < 0.99


def test_rgb_to_y_bt601():
    # grey v -> 16 + 219 v / 255 ; pure red 255 -> 16 + 65.481
    assert rgb_to_y(np.array([[[255, 255, 255]]], np.uint8))[0, 0] == pytest.approx(235.0)
    assert rgb_to_y(np.array([[[0, 0, 0]]], np.uint8))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.array([[[255, 0, 0]]], np.uint8))[0, 0] == pytest.approx(81.481)


def test_psnr_y_with_shave():
    a = _const(50, 6, 6)
    b = a.copy()
    b[1:-1, 1:-1] = 60  # interior grey +10 -> Y differs by 10*219/255
    b[0, :] = 200       # border row: shaved away
    expected = 20 * math.log10(255 / (10 * 219 / 255))
    assert psnr_y(a, b, shave=1) == pytest.approx(expected, abs=1e-10)
    assert psnr_y(a, b, shave=0) < expected - 5


def test_lr_psnr_consistent_sr_is_inf_and_known_offset():
    rng = np.random.default_rng(3)
    sr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    lr = imresize(sr, 1 / 4)
    assert lr.shape == (4, 4, 3)
    assert lr_psnr(sr, lr, 4) == float("inf")
    assert lr_psnr(_const(77), _const(77, 4, 4), 4) == float("inf")
    lr2 = lr.copy()
    lr2[0, 0, 0] = lr2[0, 0, 0] + 2 if lr2[0, 0, 0] < 250 else lr2[0, 0, 0] - 2
    # MSE = 4 / 48
    assert lr_psnr(sr, lr2, 4) == pytest.approx(10 * math.log10(255 ** 2 * 12), abs=1e-10)
    with pytest.raises(ValueError):
        lr_psnr(sr, lr[:3], 4)


def test_ntire_lr_psnr_mean_and_worst_with_inf():
    gt = _const(100)
    p104 = 10 * math.log10(255 ** 2 / 16)  # constant stays constant under D_s
    p102 = 10 * math.log10(255 ** 2 / 4)
    mean, worst = ntire_lr_psnr([gt, _const(104), _const(102)], gt, 4)
    assert mean == float("inf")
    assert worst == pytest.approx(p104, abs=1e-10)
    # samples larger than the GT are cropped to it
    mean, worst = ntire_lr_psnr(np.stack([_const(104, 17, 18), _const(102, 17, 18)]), gt, 4)
    assert mean == pytest.approx((p104 + p102) / 2, abs=1e-10)
    assert worst == pytest.approx(p104, abs=1e-10)


def test_diversity_score_constructed():
    # complementary maps: G = 1, Lb = 0 -> 100
    assert diversity_score(np.array([[[0.0, 2.0]], [[2.0, 0.0]]])) == pytest.approx(100.0)
    # G = min(1, 1) = 1; per-pixel min = [1, 0] -> Lb = 0.5 -> 50
    assert diversity_score(np.array([[[1.0, 1.0]], [[2.0, 0.0]]])) == pytest.approx(50.0)
    # G uses the best *global* sample: means 1.5 and 3 -> G = 1.5;
    # per-pixel min [1, 2] -> Lb 1.5 -> 0
    assert diversity_score(np.array([[[1.0, 2.0]], [[5.0, 1.0]]])) == pytest.approx(
        100 * (1.5 - 1.0) / 1.5)
    same = np.ones((3, 4, 5))
    assert diversity_score(same) == 0.0
    assert diversity_score(np.zeros((2, 3, 3))) == 0.0


def test_mse_maps_full_box():
    gt = np.zeros((4, 4, 3), np.uint8)
    s = gt.copy()
    s[0, 0] = 255  # squared error 1 on [0,1] scale, all channels
    m = mse_maps([s], gt)
    assert m.shape == (1, 19, 19)
    np.testing.assert_allclose(m[0, :16, :16], 1 / 256, atol=1e-15)
    assert np.all(m[0, 16:, :] == 0) and np.all(m[0, :, 16:] == 0)
    # one channel only -> RGB mean 1/3
    s2 = gt.copy()
    s2[3, 3, 1] = 255
    m2 = mse_maps([s2], gt)[0]
    assert m2[3, 3] == pytest.approx(1 / 3 / 256)
    assert m2[18, 18] == pytest.approx(1 / 3 / 256)
    assert m2[2, 2] == 0


def test_mse_maps_match_scipy_convolve():
    from scipy.signal import convolve2d

    rng = np.random.default_rng(4)
    gt = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    s = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    se = ((s / 255.0 - gt / 255.0) ** 2).mean(-1)
    ref = convolve2d(se, np.full((16, 16), 1 / 256), mode="full")
    np.testing.assert_allclose(mse_maps([s], gt)[0], ref, atol=1e-12)


def test_mse_diversity_disjoint_and_identical():
    gt = np.zeros((1, 40, 3), np.uint8)
    a, b = gt.copy(), gt.copy()
    a[0, 0] = 255
    b[0, 39] = 255  # supports of the blurred maps do not overlap
    assert mse_diversity([a, b], gt) == pytest.approx(100.0)
    assert mse_diversity([a, a.copy()], gt) == pytest.approx(0.0)
    assert mse_diversity([a, gt.copy()], gt) == 0.0  # G == 0


def test_pixel_std_diversity_population():
    samples = np.stack([_const(0, 3, 3), _const(10, 3, 3)])
    assert pixel_std_diversity(samples) == pytest.approx(5.0)  # ddof=1 would be 7.07
    mixed = np.stack([_const(0, 2, 2), _const(0, 2, 2), _const(0, 2, 2)])
    mixed[0, 0, 0, 0] = 30  # std of (30,0,0) = 14.142; 1 of 12 entries
    assert pixel_std_diversity(mixed) == pytest.approx(math.sqrt(200) / 12)


# ---------------------------------------------------------------- LPIPS


def _block_network(monkeypatch):
    import urllib.request

    import torch

    def boom(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", boom)
    monkeypatch.setattr(urllib.request, "urlopen", boom)


def test_lpips_unavailable_without_weights(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    _block_network(monkeypatch)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    m = LpipsMetric()
    assert m.available is False
    assert ALEXNET_CHECKPOINT in m.reason and "not found" in m.reason
    with pytest.raises(RuntimeError):
        m.spatial_maps([_const(1, 32, 32)], _const(1, 32, 32))
    assert list(tmp_path.iterdir()) == []  # nothing written / downloaded


def test_lpips_builds_offline_from_cached_checkpoint(tmp_path, monkeypatch):
    """Code path only: a *fake* random AlexNet checkpoint (never a real metric)."""
    torch = pytest.importorskip("torch")
    from flow.ops.metrics import ensure_torchvision_importable

    ensure_torchvision_importable()
    tv = pytest.importorskip("torchvision")
    pytest.importorskip("lpips")
    torch.manual_seed(0)
    ref = tv.models.alexnet().state_dict()
    # classifier tensors as stride-0 views keep the file tiny
    state = {k: (v if k.startswith("features") else torch.zeros(1).expand(v.shape))
             for k, v in ref.items()}
    (tmp_path / "checkpoints").mkdir()
    torch.save(state, tmp_path / "checkpoints" / ALEXNET_CHECKPOINT)
    _block_network(monkeypatch)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    m = LpipsMetric()
    assert m.available, m.reason
    assert torch.equal(m._model.net.slice1[0].weight, state["features.0.weight"])
    rng = np.random.default_rng(5)
    gt = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    other = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    maps = m.spatial_maps([gt, other], gt)
    assert maps.shape == (2, 32, 32)
    assert np.abs(maps[0]).max() < 1e-6
    assert maps[1].mean() > 0
    assert m.mean([gt, other], gt) == pytest.approx(maps.mean())
