"""Tests of the latent editing engine (flow/editing/): masks, region resampling,
normalization (eqs. 6-7), LR projection, the non-finite guard, content transfer."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flow import editing as E  # noqa: E402
from flow.models.randomize import randomize  # noqa: E402
from flow import preset  # noqa: E402
from flow.ops.imresize import imresize, resize_matrix  # noqa: E402
from flow.ops.metrics import lr_psnr  # noqa: E402
from flow import Latents, SRFlow  # noqa: E402

torch.set_num_threads(1)


def make_model(name="tiny_4x", seed=0) -> SRFlow:
    """A deterministic randomized model whose couplings and split priors all act."""
    torch.manual_seed(seed)
    return randomize(SRFlow(preset(name)), seed).eval()


def rand_images(n, h, w, seed=0):
    """Smooth-ish random images in [0, 1], (n, 3, h, w)."""
    g = torch.Generator().manual_seed(seed)
    yy = torch.linspace(0, 1, h)[:, None]
    xx = torch.linspace(0, 1, w)[None, :]
    return (0.5 * torch.rand((n, 3, h, w), generator=g) + 0.25 * (1 + torch.sin(5 * yy + 3 * xx))).clamp(0, 1)


def crafted(shapes=((6, 32, 32), (96, 8, 8)), strides=(2, 8), seed=0, batch=1) -> Latents:
    g = torch.Generator().manual_seed(seed)
    lv = [torch.randn((batch,) + s, generator=g) for s in shapes]
    H = shapes[0][1] * strides[0]
    return Latents(lv, list(strides), (H, shapes[0][2] * strides[0]))


def footprint_reference(mask, stride, h, w, d=0):
    out = np.zeros((h, w), bool)
    for i in range(h):
        for j in range(w):
            out[i, j] = mask[i * stride:(i + 1) * stride, j * stride:(j + 1) * stride].any()
    if d:
        dil = np.zeros_like(out)
        for i, j in zip(*np.nonzero(out)):
            dil[max(0, i - d):i + d + 1, max(0, j - d):j + d + 1] = True
        out = dil
    return out


# ----------------------------------------------------------------------------- masks

def test_level_masks_footprint_rule_and_dilation():
    lat = crafted()
    mask = np.zeros((64, 64), bool)
    mask[9, 17] = True                      # level 0 (stride 2): (4, 8); level 1 (stride 8): (1, 2)
    ms = E.level_masks(mask, lat)
    assert [tuple(m.shape) for m in ms] == [(32, 32), (8, 8)]
    assert torch.nonzero(ms[0]).tolist() == [[4, 8]]
    assert torch.nonzero(ms[1]).tolist() == [[1, 2]]
    rng = np.random.default_rng(0)
    for d in (0, 1, 2):
        mask = rng.random((64, 64)) > 0.995
        ms = E.level_masks(mask, lat, dilation=d)
        for m, s, t in zip(ms, lat.strides, lat.levels):
            ref = footprint_reference(mask, s, t.shape[2], t.shape[3], d)
            assert np.array_equal(m.numpy(), ref)
    # strides + shapes instead of Latents, per-level dilation
    ms = E.level_masks(mask, [2, 8], [(6, 32, 32), (96, 8, 8)], dilation=[0, 1])
    assert np.array_equal(ms[1].numpy(), footprint_reference(mask, 8, 8, 8, 1))


def test_level_masks_padded_image_and_errors():
    # unpadded HR 60x62 inside latents of a padded 64x64 image
    lat = Latents([torch.zeros(1, 6, 32, 32), torch.zeros(1, 96, 8, 8)], [2, 8], (60, 62))
    mask = np.zeros((60, 62), bool)
    mask[59, 61] = True
    ms = E.level_masks(mask, lat)
    assert torch.nonzero(ms[0]).tolist() == [[29, 30]] and torch.nonzero(ms[1]).tolist() == [[7, 7]]
    with pytest.raises(ValueError):
        E.level_masks(np.zeros((50, 50), bool), lat)
    with pytest.raises(ValueError):
        E.level_masks(np.zeros((2, 3, 4), bool), lat)


# ------------------------------------------------------------------- region resample

def test_resample_region_locality_and_seeds():
    lat = crafted()
    before = lat.clone()
    mask = np.zeros((64, 64), bool)
    mask[20:30, 10:40] = True
    ms = E.level_masks(mask, lat, dilation=1)
    a = E.resample_region(lat, ms, 0.7, seed=3)
    assert lat.equal(before)                                   # input not mutated
    for t0, t1, m in zip(lat.levels, a.levels, ms):
        assert torch.equal(t0[..., ~m], t1[..., ~m])          # outside: exactly unchanged
        assert (t0[..., m] != t1[..., m]).all()               # inside: all fresh
    assert E.resample_region(lat, ms, 0.7, seed=3).equal(a)   # same seed: identical
    b = E.resample_region(lat, ms, 0.7, seed=4)
    assert not b.equal(a)
    # full-mask resample == draw_latents-style draws: per level N(0,1)*tau from one generator
    full = [torch.ones(t.shape[-2:], dtype=torch.bool) for t in lat.levels]
    c = E.resample_region(lat, full, 0.5, seed=11)
    g = torch.Generator().manual_seed(11)
    for t, z in zip(lat.levels, c.levels):
        assert torch.equal(z, torch.randn(tuple(t.shape), generator=g) * 0.5)


def test_take_region():
    lat, other = crafted(seed=0), crafted(seed=1)
    mask = np.zeros((64, 64), bool)
    mask[40:50, 0:8] = True
    ms = E.level_masks(mask, lat)
    r = E.take_region(lat, other, ms)
    for a, b, z, m in zip(lat.levels, other.levels, r.levels, ms):
        assert torch.equal(z[..., m], b[..., m]) and torch.equal(z[..., ~m], a[..., ~m])
    with pytest.raises(ValueError):
        E.take_region(lat, crafted(shapes=((6, 16, 16), (96, 4, 4))), ms)


# ------------------------------------------------------------------- normalization

def _collections(lat: Latents, mode, masks=None):
    """Independent re-implementation of the documented collection order: a list of
    (N, rows (M, N) float64) groups."""
    B = lat.batch
    groups = []
    if mode == "global":
        parts = []
        for i, t in enumerate(lat.levels):
            m = masks[i] if masks is not None else torch.ones(t.shape[-2:], dtype=torch.bool)
            parts.append(t[:, :, m].reshape(B, -1))
        rows = torch.cat(parts, 1).double()
        return [(rows.shape[1], rows)]
    for i, t in enumerate(lat.levels):
        m = masks[i] if masks is not None else torch.ones(t.shape[-2:], dtype=torch.bool)
        if mode == "local":
            rows = t.permute(0, 2, 3, 1)[:, m].reshape(-1, t.shape[1])
        else:
            rows = t[:, :, m].reshape(B * t.shape[1], -1)
        groups.append((rows.shape[1], rows.double()))
    return groups


@pytest.mark.parametrize("mode", ["global", "local", "spatial"])
@pytest.mark.parametrize("masked", [False, True])
def test_normalize_hits_the_drawn_moments_exactly(mode, masked):
    lat = crafted(batch=2, seed=5)
    lat.levels[0] = lat.levels[0] * 3 + 1.5          # far from N(0, tau^2) to start with
    masks = None
    if masked:
        mask = np.zeros((64, 64), bool)
        mask[5:30, 33:60] = True
        masks = E.level_masks(mask, lat, dilation=1)
    tau, seed = 0.6, 123
    out = E.normalize(lat, mode, tau, seed, masks)
    rng = np.random.default_rng(seed)                 # re-derive mu_hat, var_hat
    for (N, rows_out) in _collections(out, mode, masks):
        M = rows_out.shape[0]
        mu = rng.normal(0.0, tau / math.sqrt(N), size=M)
        var = rng.gamma((N - 1) / 2, 2 * tau ** 2 / (N - 1), size=M)
        np.testing.assert_allclose(rows_out.mean(1).numpy(), mu, atol=2e-6)
        np.testing.assert_allclose(rows_out.var(1, unbiased=True).numpy(), var, rtol=2e-5, atol=1e-9)
    if masks is not None:
        for a, b, m in zip(lat.levels, out.levels, masks):
            assert torch.equal(a[..., ~m], b[..., ~m])     # only masked entries change
    # seeded: same seed identical, another seed different
    assert E.normalize(lat, mode, tau, seed, masks).equal(out)
    assert not E.normalize(lat, mode, tau, seed + 1, masks).equal(out)


def test_normalize_moments_follow_eq6_and_reject_wrong_formulas():
    """Over many collections the normalized means/variances have the moments of eq. 6:
    E[mu] = 0, Var[mu] = tau^2/N, E[var] = tau^2, Var[var] = 2 tau^4/(N-1).  Wrong
    variants (tau instead of tau^2; Gamma scale tau^2/N) predict clearly different
    values, which the tolerances exclude."""
    tau = 0.5
    lat = crafted(shapes=((6, 96, 96), (96, 24, 24)), strides=(2, 8), seed=2)
    lat.levels[0] = lat.levels[0] * 2.0 + 0.3
    out = E.normalize(lat, "local", tau, 7)
    rows = out.levels[0][0].reshape(6, -1).T.double()         # 9216 collections of N = 6
    N, M = 6, rows.shape[0]
    mu, var = rows.mean(1), rows.var(1, unbiased=True)
    var_mu, mean_var, var_var = float((mu ** 2).mean()), float(var.mean()), float(var.var())
    # correct predictions and their sampling errors
    p_var_mu, p_mean_var, p_var_var = tau ** 2 / N, tau ** 2, 2 * tau ** 4 / (N - 1)
    se_var_mu = p_var_mu * math.sqrt(2 / M)
    se_mean_var = math.sqrt(p_var_var / M)
    assert abs(float(mu.mean())) < 4 * math.sqrt(p_var_mu / M)
    assert abs(var_mu - p_var_mu) < 4 * se_var_mu
    assert abs(mean_var - p_mean_var) < 4 * se_mean_var
    assert abs(var_var - p_var_var) < 0.1 * p_var_var
    # what the wrong formulas would give, and that they are excluded
    wrong_tau = {"Var[mu] with tau/N": tau / N, "E[var] with tau": tau}
    wrong_scale = {"E[var] with scale tau^2/N": (N - 1) / 2 * tau ** 2 / N,
                   "Var[var] with scale tau^2/N": (N - 1) / 2 * (tau ** 2 / N) ** 2}
    assert abs(var_mu - wrong_tau["Var[mu] with tau/N"]) > 20 * se_var_mu
    assert abs(mean_var - wrong_tau["E[var] with tau"]) > 20 * se_mean_var
    assert abs(mean_var - wrong_scale["E[var] with scale tau^2/N"]) > 20 * se_mean_var
    assert abs(var_var - wrong_scale["Var[var] with scale tau^2/N"]) > 0.5 * p_var_var
    # spatial collections of the coarse level: N = 576, 96 collections
    out = E.normalize(lat, "spatial", tau, 8)
    rows = out.levels[1][0].reshape(96, -1).double()
    N = rows.shape[1]
    v = rows.var(1, unbiased=True)
    assert abs(float(v.mean()) - tau ** 2) < 4 * math.sqrt(2 * tau ** 4 / (N - 1) / 96)
    assert abs(float(v.mean()) - tau) > 0.2                          # the tau-not-tau^2 variant
    assert abs(float((rows.mean(1) ** 2).mean()) - tau ** 2 / N) < 0.5 * tau ** 2 / N


def test_normalize_acts_on_the_right_axes():
    """Crafted latent: normalization is an affine map per collection, so it keeps the
    pattern standardized along the collection's axes (local: channels, spatial:
    positions, global: everything) but changes the pattern standardized along any
    axis that spans several collections."""
    C, h, w = 6, 8, 8
    ch = torch.arange(C, dtype=torch.float64)[:, None, None]
    yy = torch.arange(h, dtype=torch.float64)[None, :, None]
    xx = torch.arange(w, dtype=torch.float64)[None, None, :]
    x = (ch * (1 + 0.1 * yy) + 0.5 * xx * (1 + ch) + 0.3 * yy ** 2).float()[None]
    lat = Latents([x], [2], (16, 16))

    def std_along(t, dims):
        t = t.double()
        return (t - t.mean(dims, keepdim=True)) / t.std(dims, keepdim=True)

    axes = {"local": (1,), "spatial": (2, 3), "global": (1, 2, 3)}
    for mode, dims in axes.items():
        y = E.normalize(lat, mode, 0.8, 0).levels[0]
        assert torch.allclose(std_along(y, dims), std_along(x, dims), atol=1e-5), mode
        for other, odims in axes.items():
            if not set(odims) <= set(dims):     # a collection of `other` spans several of `mode`'s
                assert not torch.allclose(std_along(y, odims), std_along(x, odims), atol=1e-3), (mode, other)
    # the new moments really are per collection: local means differ between positions
    y = E.normalize(lat, "local", 0.8, 0).levels[0]
    assert y.mean(1).std() > 0.05


def test_normalize_guards_degenerate_collections():
    # a level with 1 channel: local collections have N = 1 -> left unchanged, no draws
    lat = Latents([torch.randn(1, 1, 8, 8), torch.randn(1, 4, 2, 2)], [2, 8], (16, 16))
    out, info = E.normalize(lat, "local", 0.8, 0, return_info=True)
    assert torch.equal(out.levels[0], lat.levels[0]) and info.skipped == 64
    assert not torch.equal(out.levels[1], lat.levels[1])
    assert any("< 2" in n for n in info.notes)
    # constant collections: set to the drawn mean (finite, no division by ~0)
    const = Latents([torch.full((1, 6, 4, 4), 0.25)], [2], (8, 8))
    out, info = E.normalize(const, "local", 0.8, 3, return_info=True)
    assert info.degenerate == 16 and torch.isfinite(out.levels[0]).all()
    mu = np.random.default_rng(3).normal(0, 0.8 / math.sqrt(6), size=16)
    np.testing.assert_allclose(out.levels[0][0].permute(1, 2, 0).reshape(16, 6).numpy(),
                               np.repeat(mu[:, None], 6, 1), atol=1e-6)
    # masked spatial normalization whose mask has a single position at a level
    lat = crafted()
    mask = np.zeros((64, 64), bool)
    mask[0, 0] = True
    ms = E.level_masks(mask, lat)
    out, info = E.normalize(lat, "spatial", 0.8, 0, ms, return_info=True)
    assert out.equal(lat) and info.skipped == 6 + 96
    with pytest.raises(ValueError):
        E.normalize(lat, "channel", 0.8, 0)
    with pytest.raises(ValueError):
        E.normalize(lat, "local", -1.0, 0)


def _eq6_holds(tau=0.5) -> bool:
    """The moment checks of the test above, as a predicate (for the mutation test)."""
    lat = crafted(shapes=((6, 96, 96), (96, 24, 24)), strides=(2, 8), seed=2)
    rows = E.normalize(lat, "local", tau, 7).levels[0][0].reshape(6, -1).T.double()
    N, M = 6, rows.shape[0]
    mu, var = rows.mean(1), rows.var(1, unbiased=True)
    p_var_mu, p_var_var = tau ** 2 / N, 2 * tau ** 4 / (N - 1)
    return (abs(float((mu ** 2).mean()) - p_var_mu) < 4 * p_var_mu * math.sqrt(2 / M)
            and abs(float(var.mean()) - tau ** 2) < 4 * math.sqrt(p_var_var / M)
            and abs(float(var.var()) - p_var_var) < 0.1 * p_var_var)


@pytest.mark.parametrize("variant", ["correct", "tau_not_tau2", "scale_tau2_over_N", "shape_N_over_2"])
def test_eq6_checks_catch_wrong_formulas(monkeypatch, variant):
    """Mutation test: replacing eq. 6 by plausible wrong formulas makes the checks fail."""
    def wrong(rng, M, N, tau):
        if variant == "tau_not_tau2":
            return rng.normal(0.0, math.sqrt(tau / N), size=M), rng.gamma((N - 1) / 2, 2 * tau / (N - 1), size=M)
        if variant == "scale_tau2_over_N":
            return rng.normal(0.0, tau / math.sqrt(N), size=M), rng.gamma((N - 1) / 2, tau ** 2 / N, size=M)
        return rng.normal(0.0, tau / math.sqrt(N), size=M), rng.gamma(N / 2, 2 * tau ** 2 / N, size=M)

    if variant != "correct":
        monkeypatch.setattr(E.latents, "draw_moments", wrong)      # where normalize looks it up
    assert _eq6_holds() == (variant == "correct")


def test_restore_latents_is_spatial_then_local():
    lat = crafted()
    r = E.restore_latents(lat, 0.7, 5)
    ref = E.normalize(E.normalize(lat, "spatial", 0.7, 5), "local", 0.7, 6)
    assert r.equal(ref)


# -------------------------------------------------------------------- LR projection

def test_project_lr_exact_min_norm():
    rng = np.random.default_rng(0)
    H, W, s = 52, 36, 4
    y = rng.random((H, W, 3)) * 0.8 + 0.1
    x = rng.random((H // s, W // s, 3)) * 0.8 + 0.1
    p = E.project_lr(y, x, s)
    assert np.abs(imresize(p, 1 / s) - x).max() < 1e-10            # D(P(y)) = x
    assert np.abs(E.project_lr(p, x, s) - p).max() < 1e-10           # idempotent
    np.testing.assert_allclose(E.project_lr(y, x, s, alpha=0.5), (y + p) / 2, atol=1e-12)
    assert np.array_equal(E.project_lr(y, x, s, alpha=0.0), y)
    # minimum norm: any other consistent image is at least as far from y
    Ah, Aw = resize_matrix(H, scale=1 / s), resize_matrix(W, scale=1 / s)
    null_h = np.linalg.svd(Ah)[2][Ah.shape[0]:].T                    # H x (H-h) null space of A_h
    for k in range(3):
        q = p.copy()
        q[..., k] += null_h @ rng.standard_normal((null_h.shape[1], W)) * 0.05
        assert np.abs(imresize(q, 1 / s) - x).max() < 1e-9
        assert np.linalg.norm(q - y) > np.linalg.norm(p - y)
    # torch (N, C, H, W) path agrees
    t = E.project_lr(torch.from_numpy(np.moveaxis(y, -1, 0))[None].float(),
                     torch.from_numpy(np.moveaxis(x, -1, 0))[None].float(), s)
    np.testing.assert_allclose(np.moveaxis(t[0].numpy(), 0, -1), p, atol=1e-5)


def test_project_lr_uint8_consistency():
    hr = (rand_images(1, 64, 64, seed=3)[0].permute(1, 2, 0).numpy() * 200 + 20).astype(np.uint8)
    lr = imresize(hr, 1 / 4)
    sr = np.clip(hr.astype(np.float64) / 255 + np.random.default_rng(1).normal(0, 0.05, hr.shape), 0, 1)
    before = lr_psnr((sr * 255 + 0.5).astype(np.uint8), lr, 4)
    p = E.project_lr(sr, lr.astype(np.float64) / 255, 4)
    after = lr_psnr((np.clip(p, 0, 1) * 255 + 0.5).astype(np.uint8), lr, 4)
    assert before < 40 and after > 50


# ----------------------------------------------------------------- non-finite guard

def test_guard_retries_at_lower_temperature_then_falls_back():
    lat = Latents([torch.zeros(1, 6, 16, 16), torch.zeros(1, 96, 4, 4)], [2, 8], (32, 32))

    def fake_decode(z):                # "explodes" where a level-0 latent exceeds 3
        img = torch.zeros(1, 3, 32, 32)
        hot = (z.levels[0].abs().amax(1) > 3)[0]
        big = hot.repeat_interleave(2, 0).repeat_interleave(2, 1)
        img[:, :, big] = float("nan")
        return img

    z = lat.clone()
    z.levels[0][0, :, 5, 5] = 20.0                 # 20 -> 10 -> 5 -> 2.5: fixed by the 3rd retry
    x, z2, warns = E.guard_decode(fake_decode, z, (0, 32, 0, 32))
    assert torch.isfinite(x).all() and len(warns) == 1 and "fixed" in warns[0]
    assert torch.allclose(z2.levels[0][0, :, 5, 5], torch.full((6,), 2.5))
    assert torch.equal(z.levels[0][0, :, 5, 5], torch.full((6,), 20.0))   # input untouched
    z.levels[0][0, :, 5, 5] = 1e6                  # never fixed -> fallback, reported
    fb = torch.full((1, 3, 32, 32), 0.3)
    x, _, warns = E.guard_decode(fake_decode, z, (0, 32, 0, 32), fallback=fb)
    assert torch.isfinite(x).all() and "replaced" in warns[0]
    assert torch.equal(x[..., 10:12, 10:12], fb[..., 10:12, 10:12])     # not a black patch


def test_guard_on_real_model_with_huge_latents():
    model = make_model("tiny_4x")
    lr = rand_images(1, 16, 16, seed=1)
    with torch.no_grad():
        cond = model.encode_condition(lr, cache=True)
        z = model.draw_latents(cond, 0.8, 0)
        z.levels[1][0, :, 3, 3] = 1e30
        z.levels[0][0, :, 10:13, 10:13] = -1e30
        raw = model.decode(cond, z)
        assert not torch.isfinite(raw).all() or raw.abs().max() > E.BOUND
        fb = torch.full((1, 3, 64, 64), 0.5)
        x, z2, warns = E.guard_decode(lambda q: model.decode(cond, q), z, (0, 64, 0, 64), fallback=fb)
    assert torch.isfinite(x).all() and x.abs().max() <= E.BOUND and warns
    assert not torch.equal(z2.levels[1], z.levels[1])          # the affected latents were tamed


# ------------------------------------------------------------------- windows/paste

def test_edit_boxes_and_bbox():
    ms = [torch.zeros(32, 32, dtype=torch.bool), torch.zeros(8, 8, dtype=torch.bool)]
    ms[0][10, 12] = True
    ms[1][2, 3] = True
    bbox = E.masks_bbox(ms, [2, 8])
    assert bbox == (16, 24, 24, 32)
    win, spl = E.edit_boxes(bbox, (64, 64), 8, margin=8)
    assert spl == (8, 32, 16, 40) and win == (0, 40, 8, 48)
    assert all(v % 8 == 0 for v in win)
    assert E.masks_bbox([torch.zeros(4, 4, dtype=torch.bool)], [2]) is None


def test_paste_and_errors():
    tgt = np.zeros((40, 50, 3), np.uint8)
    src = np.full((20, 30, 3), 200, np.uint8)
    out, m = E.paste(tgt, src, (0, 0, 10, 10), (35, 45), (10, 10))    # partly outside: cut off
    assert m.sum() == 25 and (out[35:, 45:] == 200).all() and out[:35].max() == 0
    out, m = E.paste(tgt, src, (2, 3, 12, 23), (0, 0), (5, 10))        # resized
    assert m.sum() == 50 and out[:5, :10].min() == 200
    for bad in [(0, 0, 25, 10), (5, 5, 5, 10), (-1, 0, 3, 3)]:
        with pytest.raises(ValueError, match="source box"):
            E.paste(tgt, src, bad, (0, 0), (4, 4))
    with pytest.raises(ValueError, match="outside the image"):
        E.paste(tgt, src, (0, 0, 4, 4), (40, 0), (4, 4))


def test_content_transfer_changes_latents_only_near_the_paste():
    model = make_model("tiny_4x")
    lr = rand_images(1, 32, 32, seed=2)
    with torch.no_grad():
        cond = model.encode_condition(lr, cache=True)
        lat = model.draw_latents(cond, 0.8, 0)
        cur = model.decode(cond, lat).clamp(0, 1)
        cur8 = (cur[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        src = (rand_images(1, 64, 64, seed=9)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        pasted, m = E.paste(cur8, src, (0, 0, 24, 24), (50, 60), (24, 24))
        pt = torch.from_numpy(pasted).permute(2, 0, 1)[None].float() / 255
        new, masks = E.content_transfer(model, cond, lat, pt, m, "local", 0.8, 0, dilation=1, margin=16)
    for a, b, lm, ref in zip(lat.levels, new.levels, masks, E.level_masks(m, lat, dilation=1)):
        assert torch.equal(lm, ref)
        assert torch.equal(a[..., ~lm], b[..., ~lm])
        assert not torch.equal(a[..., lm], b[..., lm])
    # inside: the local collections have the documented moments (masked normalization)
    rows = new.levels[0][0].permute(1, 2, 0)[masks[0]].double()
    rng = np.random.default_rng(0)
    mu = rng.normal(0, 0.8 / math.sqrt(6), size=rows.shape[0])
    np.testing.assert_allclose(rows.mean(1).numpy(), mu, atol=1e-5)


def test_fit_image():
    im = np.arange(30 * 50 * 3, dtype=np.uint8).reshape(30, 50, 3)
    assert E.fit_image(im, 64, 64).shape == (64, 64, 3)
    assert E.fit_image(im, 16, 40).shape == (16, 40, 3)
    assert np.array_equal(E.fit_image(im, 30, 50), im)


# ----------------------------------------------------------------------------- style statistics

def _chan_stats(t: torch.Tensor):
    x = t.double().permute(1, 0, 2, 3).reshape(t.shape[1], -1)
    return x.mean(1), torch.cov(x)


def test_match_statistics_moves_the_statistics_to_the_style():
    lat = crafted(seed=1)
    g = torch.Generator().manual_seed(5)
    # a style with its own channel means and a correlated covariance, within the ratio clamp
    style_lv = []
    for t in lat.levels:
        C = t.shape[1]
        A = torch.eye(C) * 0.6 + 0.2 * torch.randn((C, C), generator=g) / math.sqrt(C)   # eigenvalues < 1.2²
        z = (torch.einsum("ij,bjhw->bihw", A, torch.randn(t.shape, generator=g))
             + 0.1 * torch.randn((1, C, 1, 1), generator=g))
        style_lv.append(z)
    style = E.StyleStats.of(Latents(style_lv, list(lat.strides), lat.hr_size))
    assert all((mu.abs() < E.MAX_STYLE_MEAN).all() for mu in style.mean)
    out = E.match_statistics(lat, style, 1.0, max_ratio=10.0)
    for o, t, mu_s, cov_s in zip(out.levels, lat.levels, style.mean, style.cov):
        mu, cov = _chan_stats(o)
        mu0, cov0 = _chan_stats(t)
        assert torch.allclose(mu, mu_s, atol=1e-4)
        d0, d1 = torch.linalg.norm(cov0 - cov_s), torch.linalg.norm(cov - cov_s)
        assert d1 < 0.35 * d0, (d0, d1)                         # most of the way (shrinkage: not exact)
        if t.shape[1] * 20 < t.shape[2] * t.shape[3]:          # many positions per channel: nearly exact
            assert torch.allclose(cov, cov_s, atol=0.02)
    # strength 0: unchanged; 0.5: halfway
    same = E.match_statistics(lat, style, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(same.levels, lat.levels))
    half = E.match_statistics(lat, style, 0.5, max_ratio=10.0)
    for h, o, t in zip(half.levels, out.levels, lat.levels):
        assert torch.allclose(h, 0.5 * (o + t), atol=1e-5)
    with pytest.raises(ValueError, match="strength"):
        E.match_statistics(lat, style, 1.5)


def test_match_statistics_clamps_the_range():
    lat = crafted(seed=2)
    big = E.StyleStats([torch.full((t.shape[1],), 50.0, dtype=torch.float64) for t in lat.levels],
                       [torch.eye(t.shape[1], dtype=torch.float64) * 1e4 for t in lat.levels])
    out = E.match_statistics(lat, big, 1.0)
    for o, t in zip(out.levels, lat.levels):
        assert torch.isfinite(o).all()
        sd, sd0 = o.std(dim=(0, 2, 3)), t.std(dim=(0, 2, 3))
        assert (sd <= E.MAX_STYLE_STD * 1.05).all() and (sd <= sd0 * E.MAX_STD_RATIO * 1.05).all()
        assert (o.mean(dim=(0, 2, 3)).abs() <= E.MAX_STYLE_MEAN + 1e-4).all()
    flat = E.StyleStats([torch.zeros(t.shape[1], dtype=torch.float64) for t in lat.levels],
                        [torch.zeros(t.shape[1], t.shape[1], dtype=torch.float64) for t in lat.levels])
    out = E.match_statistics(lat, flat, 1.0)
    for o, t in zip(out.levels, lat.levels):                  # a flat style shrinks by at most 1/ratio
        assert torch.isfinite(o).all()
        assert (o.std(dim=(0, 2, 3)) >= t.std(dim=(0, 2, 3)) / E.MAX_STD_RATIO * 0.95).all()


def test_match_statistics_masked_changes_only_the_mask():
    lat = crafted(seed=3)
    style = E.StyleStats.of(crafted(seed=4))
    style = E.StyleStats([m + 0.5 for m in style.mean], [c * 1.5 for c in style.cov])
    mask = np.zeros(lat.hr_size, bool)
    mask[8:40, 16:48] = True
    masks = E.level_masks(mask, lat)
    out = E.match_statistics(lat, style, 1.0, masks)
    for i, (o, t, m) in enumerate(zip(out.levels, lat.levels, masks)):
        assert torch.equal(o[..., ~m], t[..., ~m])
        assert not torch.allclose(o[..., m], t[..., m])
        # the masked entries now have the style's channel means
        assert torch.allclose(o[..., m].mean(dim=(0, 2)).double(),
                              style.mean[i].clamp(-E.MAX_STYLE_MEAN, E.MAX_STYLE_MEAN), atol=1e-4)


@pytest.mark.parametrize("kind", ["noise", "flat", "checker"])
def test_style_statistics_of_odd_images_decode_finite(kind):
    m = make_model()
    rng = np.random.default_rng(0)
    if kind == "noise":
        st = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    elif kind == "flat":
        st = np.full((33, 33, 3), 200, np.uint8)
    else:
        yy, xx = np.mgrid[:64, :64]
        st = np.where(((yy // 1 + xx // 1) % 2)[..., None] == 0, 255, 0).repeat(3, 2).astype(np.uint8)
    stats = E.style_statistics(m, st, lr_side=16)
    assert all(torch.isfinite(c).all() for c in stats.cov)
    lr = rand_images(1, 16, 16)
    cond = m.encode_condition(lr)
    with torch.no_grad():
        lat = m.draw_latents(cond, 0.8, 0)
        out = m.decode(cond, E.match_statistics(lat, stats, 1.0))
    assert not bool(E.bad_pixels(out).any())
