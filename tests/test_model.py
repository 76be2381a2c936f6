"""Whole-model tests: official architectures round trip, cached vs uncached
conditioning, odd LR sizes, reproducible sampling and the NLL (issue #3)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.autograd.functional import jacobian

from conftest import make_model, rand_images, randomize
from flow import SRFlow, preset
from flow import FlowConfig, ModelConfig, RRDBConfig
from flow.layers import FlowStep, Split

LOG2PI = math.log(2 * math.pi)


def _logp_by_hand(latents, logdet):
    lp = logdet.clone()
    for z in latents.levels:
        lp = lp + (-0.5 * (z * z + LOG2PI)).flatten(1).sum(1)
    return lp


def _roundtrip(model, lr, hr):
    with torch.no_grad():
        cond = model.encode_condition(lr)
        lat, logdet = model.encode(hr, cond)
        rec = model.decode(cond, lat)
    return lat, logdet, rec, cond


def _tiny_da_s() -> ModelConfig:
    """A small SRFlow-DA-S-like model: one squeeze by the whole scale, splits every 6 steps."""
    return ModelConfig(name="tiny_da_s", scale=4, rrdb=RRDBConfig(nf=16, nb=2, gc=8),
                       flow=FlowConfig(K=8, L=1, coupling="da", hidden_channels=8, n_hidden_layers=2,
                                       kernel_hidden=3, split="every6", squeeze="once", blocks=[0, 1]))


# ---------------------------------------------------------------------------
# official architectures, randomized weights
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def df2k_4x():
    return make_model("srflow_df2k_4x", seed=0)


OFFICIAL = [  # preset, LR size, expected latent shapes for the HR size (C, H/s, W/s) as strides
    ("srflow_df2k_4x", (8, 8), [(6, 2), (96, 8)]),
    ("srflow_df2k_8x", (4, 4), [(6, 2), (12, 4), (192, 16)]),
    ("srflow_da_df2k_4x", (8, 8), [(6, 2), (24, 4)]),
    ("srflow_da_s_df2k_4x", (8, 8), [(24, 4), (12, 4), (12, 4)]),
]


@pytest.mark.parametrize("name,lr_hw,shapes", OFFICIAL, ids=[o[0] for o in OFFICIAL])
def test_official_architecture_roundtrip(name, lr_hw, shapes, request):
    model = request.getfixturevalue("df2k_4x") if name == "srflow_df2k_4x" else make_model(name, seed=1)
    s = model.scale
    lr = rand_images(1, *lr_hw, seed=1)
    hr = rand_images(1, lr_hw[0] * s, lr_hw[1] * s, seed=2)
    H, W = hr.shape[-2:]
    lat, logdet, rec, _ = _roundtrip(model, lr, hr)
    assert [tuple(t.shape) for t in lat.levels] == [(1, c, H // st, W // st) for c, st in shapes]
    assert lat.numel() == 3 * H * W
    assert lat.strides == [st for _, st in shapes]
    assert model.latent_shapes(H, W) == [(c, H // st, W // st) for c, st in shapes]
    assert torch.isfinite(logdet).all() and abs(logdet.item()) > 10
    assert rec.shape == hr.shape
    err = (rec - hr).abs().max().item()
    assert err < 1e-4, err
    # the latents are not a trivial rearrangement of the input
    assert all(t.std() > 0.05 for t in lat.levels)


def _cache_equivalence(model, lr, hr, tol_lat, tol_dec):
    with torch.no_grad():
        cached = model.encode_condition(lr)
        plain = model.encode_condition(lr, cache=False)
        assert cached.caches is not None and plain.caches is None
        lat_c, ld_c = model.encode(hr, cached)
        lat_p, ld_p = model.encode(hr, plain)
        for a, b in zip(lat_c.levels, lat_p.levels):
            torch.testing.assert_close(a, b, atol=tol_lat, rtol=tol_lat)
        torch.testing.assert_close(ld_c, ld_p, atol=1e3 * tol_lat, rtol=tol_lat)
        z = model.draw_latents(cached, 0.7, seed=5, n=cached.batch)
        torch.testing.assert_close(model.decode(cached, z), model.decode(plain, z), atol=tol_dec, rtol=0)
        torch.testing.assert_close(model.decode(cached, lat_c), model.decode(plain, lat_c),
                                   atol=tol_dec, rtol=0)


def test_cached_vs_uncached_condition(df2k_4x):
    # float32: the cached path sums the coupling's first conv in a different order
    _cache_equivalence(df2k_4x, rand_images(1, 8, 8, seed=3), rand_images(1, 32, 32, seed=4), 1e-5, 5e-5)


@pytest.mark.parametrize("name", ["tiny_4x", "tiny_da_s"])
def test_cached_vs_uncached_condition_float64(name):
    torch.manual_seed(1)
    model = SRFlow(preset(name) if name != "tiny_da_s" else _tiny_da_s()).double()
    randomize(model, seed=2, weight_std=0.02).eval()
    lr = rand_images(2, 4, 6, seed=3, dtype=torch.float64)
    hr = rand_images(2, 16, 24, seed=4, dtype=torch.float64)
    _cache_equivalence(model, lr, hr, 1e-11, 1e-10)


def test_conditioning_features_official_4x(df2k_4x):
    """320-channel maps at HR/2 (fea_up2), LR (fea_up1) and LR/2 (fea_up0)."""
    lr = rand_images(1, 8, 8, seed=6)
    with torch.no_grad():
        cond = df2k_4x.encode_condition(lr, cache=False)
    assert {k: tuple(v.shape) for k, v in cond.features.items()} == {
        2: (1, 320, 16, 16), 1: (1, 320, 8, 8), 0: (1, 320, 4, 4)}
    fn = df2k_4x.flowUpsamplerNet
    used = {fn.feature_key(s) for m, s in zip(fn.layers, fn.strides) if isinstance(m, FlowStep) and m.conditional}
    assert used == {0, 1, 2}


@pytest.mark.parametrize("tail", ["official", "esrgan"])
@pytest.mark.parametrize("name", ["tiny_4x", "tiny_8x"])
def test_conditioning_feature_construction(name, tail):
    """Level feature first, then the stacked RRDB block outputs resized by nearest
    neighbour; fea_up0 = bilinear x0.5 (= 2x2 average) of last_lr_fea; fea_up2/4 are
    the upconvs of nearest-upsampled maps.  Official tail: last = h + trunk_conv(h) (h the
    last block's output) and fea_up2/4 after the LReLU; ESRGAN tail: last = conv_first(x) +
    trunk_conv(h) and fea_up2/4 before it."""
    cfg = preset(name)
    cfg.rrdb.tail = tail
    model = randomize(SRFlow(cfg), seed=2)
    rrdb, nf = model.RRDB, model.cfg.rrdb.nf
    lr = rand_images(1, 4, 6, seed=7)
    act = (lambda t: F.leaky_relu(t, 0.2)) if tail == "official" else (lambda t: t)
    with torch.no_grad():
        cond = model.encode_condition(lr, cache=False)
        h = rrdb.conv_first(lr)
        kept = {}
        for i, blk in enumerate(rrdb.RRDB_trunk):
            h = blk(h)
            kept[i] = h
        last = (h if tail == "official" else rrdb.conv_first(lr)) + rrdb.trunk_conv(h)
        stack = torch.cat([kept[0], kept[1]], 1)
        up2 = rrdb.upconv1(F.interpolate(last, scale_factor=2, mode="nearest"))
        up4 = rrdb.upconv2(F.interpolate(F.leaky_relu(up2, 0.2), scale_factor=2, mode="nearest"))
        up2, up4 = act(up2), act(up4)
    f = cond.features
    assert set(f) == ({0, 1, 2} if model.scale == 4 else {0, 1, 2, 4})
    torch.testing.assert_close(f[1], torch.cat([last, stack], 1))
    torch.testing.assert_close(f[0][:, :nf], F.avg_pool2d(last, 2), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(f[0][:, nf:], stack[..., ::2, ::2])
    torch.testing.assert_close(f[2][:, :nf], up2)
    torch.testing.assert_close(f[2][:, nf:], stack.repeat_interleave(2, -1).repeat_interleave(2, -2))
    if model.scale == 8:
        torch.testing.assert_close(f[4][:, :nf], up4)
        torch.testing.assert_close(f[4][:, nf:], stack.repeat_interleave(4, -1).repeat_interleave(4, -2))


def test_rrdb_sr_image_is_the_same_network_for_both_tails():
    """``RRDBNet.forward``: conv_last(lrelu(HRconv(lrelu(up-feature)))) with the tail's residual."""
    cfg = preset("tiny_4x")
    model = randomize(SRFlow(cfg), seed=3)
    r = model.RRDB
    lr = rand_images(1, 5, 4, seed=1)
    lre = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
    up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
    with torch.no_grad():
        for tail in ("official", "esrgan"):
            r.tail = tail
            h = r.conv_first(lr)
            x = h
            for blk in r.RRDB_trunk:
                x = blk(x)
            last = (x if tail == "official" else h) + r.trunk_conv(x)
            ref = r.conv_last(lre(r.HRconv(lre(r.upconv2(up(lre(r.upconv1(up(last)))))))))
            torch.testing.assert_close(r(lr), ref)


def test_split_layout_official(df2k_4x):
    """Official off-by-one: 4x splits only after level 1, 8x after levels 1 and 2."""
    m8 = SRFlow(preset("srflow_df2k_8x"))
    for model, idx, n in [(df2k_4x, [19], 58), (m8, [19, 39], 78)]:
        layers = model.flowUpsamplerNet.layers
        assert len(layers) == n
        assert [i for i, m in enumerate(layers) if isinstance(m, Split)] == idx


# ---------------------------------------------------------------------------
# whole-model log-determinant and round trip on small models (double precision)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", ["tiny_4x", "tiny_da_s"])
def test_model_logdet_matches_bruteforce_jacobian(cfg):
    torch.manual_seed(0)
    model = SRFlow(preset(cfg) if cfg != "tiny_da_s" else _tiny_da_s()).double()
    randomize(model, seed=3, weight_std=0.02).eval()
    lr = rand_images(1, 2, 2, seed=1, dtype=torch.float64)
    hr = rand_images(1, 8, 8, seed=2, dtype=torch.float64)
    with torch.no_grad():
        cond = model.encode_condition(lr)
        lat, logdet = model.encode(hr, cond)
        rec = model.decode(cond, lat)
    torch.testing.assert_close(rec, hr, atol=1e-10, rtol=0)

    def f(x):
        return torch.cat([t.reshape(-1) for t in model.encode(x, cond)[0].levels])

    J = jacobian(f, hr, vectorize=True).reshape(hr.numel(), hr.numel())
    sign, logabs = torch.linalg.slogdet(J)
    assert sign != 0
    assert logdet.item() == pytest.approx(logabs.item(), abs=1e-7)


def test_tiny_da_s_layout():
    m = SRFlow(_tiny_da_s())
    fn = m.flowUpsamplerNet
    kinds = [type(x).__name__ + ("c" if isinstance(x, FlowStep) and x.conditional else "") for x in fn.layers]
    assert kinds == ["Squeeze", "FlowStep", "FlowStep", "FlowStepc", "Split"] + ["FlowStepc"] * 6 + \
        ["Split", "FlowStepc"]
    assert m.latent_shapes(16, 16) == [(24, 4, 4), (12, 4, 4), (12, 4, 4)]


# ---------------------------------------------------------------------------
# odd LR sizes
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,lr_hw", [("tiny_4x", (7, 9)), ("tiny_8x", (5, 7)), ("tiny_4x", (3, 2)),
                                        ("srflow_df2k_4x", (7, 9))])
def test_odd_lr_sizes(name, lr_hw, request):
    model = request.getfixturevalue("df2k_4x") if name == "srflow_df2k_4x" else make_model(name, seed=4)
    s = model.scale
    h, w = lr_hw
    lr = rand_images(1, h, w, seed=8)
    hr = rand_images(1, h * s, w * s, seed=9)
    lat, _, rec, cond = _roundtrip(model, lr, hr)
    assert rec.shape == (1, 3, h * s, w * s)
    assert (rec - hr).abs().max() < 1e-4
    with torch.no_grad():
        sr = model.decode(cond, model.draw_latents(cond, 0.8, seed=1))
    assert sr.shape == (1, 3, h * s, w * s) and torch.isfinite(sr).all()
    if name == "srflow_df2k_4x":
        return
    # identical to encoding the reflect-padded pair by hand
    m = model.lr_multiple
    ph, pw = (-h) % m, (-w) % m
    assert (ph, pw) == cond.pad and (ph or pw)
    lr_p = F.pad(lr, (0, pw, 0, ph), mode="reflect")
    hr_p = F.pad(hr, (0, pw * s, 0, ph * s), mode="reflect")
    with torch.no_grad():
        lat_p, _ = model.encode(hr_p, lr_p)
    for a, b in zip(lat.levels, lat_p.levels):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_wrong_hr_size_rejected(tiny_model):
    with torch.no_grad(), pytest.raises(ValueError):
        tiny_model.encode(rand_images(1, 16, 20), rand_images(1, 4, 4))


# ---------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------

def test_sample_reproducible_per_seed(tiny_model):
    model = tiny_model
    lr = rand_images(1, 6, 4, seed=10)
    a = model.sample(lr, temperature=0.8, seed=3)
    b = model.sample(lr, temperature=0.8, seed=3)
    c = model.sample(lr, temperature=0.8, seed=4)
    assert a.shape == (1, 3, 24, 16)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3
    batch = model.sample(lr, temperature=0.8, seed=3, n=3)
    assert batch.shape == (3, 3, 24, 16)
    for k in range(3):
        single = model.sample(lr, temperature=0.8, seed=3 + k)
        torch.testing.assert_close(batch[k:k + 1], single, atol=1e-5, rtol=0)
    assert (batch[0] - batch[1]).abs().max() > 1e-3


def test_sample_temperature(tiny_model):
    model = tiny_model
    lr = rand_images(1, 4, 4, seed=11)
    z0 = model.sample(lr, temperature=0.0, seed=1)
    assert torch.equal(z0, model.sample(lr, temperature=0.0, seed=99))
    _, lat1 = model.sample(lr, temperature=1.0, seed=5, return_latents=True)
    _, lat5 = model.sample(lr, temperature=0.5, seed=5, return_latents=True)
    _, lat0 = model.sample(lr, temperature=0.0, seed=5, return_latents=True)
    for t1, t5, t0 in zip(lat1.levels, lat5.levels, lat0.levels):
        torch.testing.assert_close(t5, 0.5 * t1)
        assert torch.all(t0 == 0)
        assert 0.7 < t1.std().item() < 1.3 or t1.numel() < 50
    with torch.no_grad():
        zeros = [torch.zeros_like(t) for t in lat0.levels]
        torch.testing.assert_close(model.decode(lr, zeros), z0, atol=1e-6, rtol=0)
        # the tau=1 sample decodes from exactly the returned latents
        torch.testing.assert_close(model.decode(lr, lat1), model.sample(lr, 1.0, seed=5), atol=1e-6, rtol=0)


def test_sample_from_uncached_condition(tiny_model):
    """A Condition built without caches (e.g. under grad) also samples n images."""
    lr = rand_images(1, 4, 4, seed=12)
    cond = tiny_model.encode_condition(lr, cache=False)
    s = tiny_model.sample(cond, temperature=0.8, seed=2, n=2)
    ref = tiny_model.sample(lr, temperature=0.8, seed=2, n=2)
    torch.testing.assert_close(s, ref, atol=1e-5, rtol=0)


def test_sample_rejects_batched_lr(tiny_model):
    with pytest.raises(ValueError):
        tiny_model.sample(rand_images(2, 4, 4), 0.5)


# ---------------------------------------------------------------------------
# NLL
# ---------------------------------------------------------------------------

def test_nll_matches_hand_computation(tiny_model_8x):
    model = tiny_model_8x
    lr = rand_images(2, 2, 4, seed=13)
    hr = rand_images(2, 16, 32, seed=14)
    H, W = 16, 32
    with torch.no_grad():
        nll = model.nll(hr, lr)
        lat, logdet = model.encode(hr, lr)
    logp = _logp_by_hand(lat, logdet)
    bpd = -logp / (3 * H * W * math.log(2))
    torch.testing.assert_close(nll.bits_per_dim, bpd, atol=1e-5, rtol=1e-5)
    # without dequantization the official number is 3x bits/dim (per pixel, not per dim)
    torch.testing.assert_close(nll.official_bpp, 3 * nll.bits_per_dim, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(nll.official_bpp, -logp / (H * W * math.log(2)), atol=1e-5, rtol=1e-5)
    assert nll.bits_per_dim.shape == (2,)
    assert (nll.bits_per_dim[0] - nll.bits_per_dim[1]).abs() > 1e-6


def test_nll_dequantized_includes_quant_term(tiny_model):
    model = tiny_model
    lr = rand_images(1, 4, 6, seed=15)
    hr = rand_images(1, 16, 24, seed=16)
    H, W, quant = 16, 24, 32
    with torch.no_grad():
        nll = model.nll(hr, lr, dequantize=True, quant=quant, generator=torch.Generator().manual_seed(7))
        u = torch.rand(hr.shape, generator=torch.Generator().manual_seed(7))
        noisy = hr + (u - 0.5) / quant
        lat, logdet = model.encode(noisy, lr)
        other = model.nll(hr, lr, dequantize=True, quant=quant, generator=torch.Generator().manual_seed(8))
        clean = model.nll(hr, lr)
    logp = _logp_by_hand(lat, logdet)
    P = H * W
    bpd = (-logp + 3 * P * math.log(quant)) / (3 * P * math.log(2))
    bpp = (-logp + P * math.log(quant)) / (P * math.log(2))
    torch.testing.assert_close(nll.bits_per_dim, bpd, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(nll.official_bpp, bpp, atol=1e-5, rtol=1e-5)
    # official counts log(quant) per pixel, bits/dim per sub-pixel: 3*bpd - bpp = 2*log2(quant)
    torch.testing.assert_close(3 * nll.bits_per_dim - nll.official_bpp,
                               torch.full((1,), 2 * math.log2(quant)), atol=1e-4, rtol=0)
    assert (other.bits_per_dim - nll.bits_per_dim).abs() > 1e-6       # the noise matters
    # the dequantized bits/dim is the clean one plus log2(quant) up to the noise's effect
    assert abs((nll.bits_per_dim - clean.bits_per_dim).item() - math.log2(quant)) < 1.0


def test_training_objective_is_dequantized_bpd(tiny_model):
    model = tiny_model.train()
    for m in model.modules():   # keep randomized actnorms (no data init)
        if hasattr(m, "inited"):
            assert bool(m.inited)
    lr = rand_images(2, 4, 4, seed=17)
    hr = rand_images(2, 16, 16, seed=18)
    loss, bpd, l1 = model(hr, lr, quant=32, generator=torch.Generator().manual_seed(3))
    assert l1 is None
    with torch.no_grad():
        ref = model.nll(hr, lr, dequantize=True, quant=32, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(bpd.detach(), ref.bits_per_dim.mean(), atol=1e-5, rtol=1e-6)
    loss.backward()
    assert model.RRDB.conv_first.weight.grad is not None
    assert model.RRDB.conv_first.weight.grad.abs().sum() > 0
    zero_convs = [m for m in model.modules() if type(m).__name__ == "ZeroConv"]
    assert all(z.weight.grad is not None and z.weight.grad.abs().sum() > 0 for z in zero_convs)


def test_actnorm_data_init_on_fresh_model_train_step():
    """A fresh model's first train-mode pass initialises the flow's actnorms so that
    the first transition step outputs zero mean / unit std per channel."""
    torch.manual_seed(0)
    model = SRFlow(preset("tiny_4x")).train()
    lr = rand_images(2, 4, 4, seed=19)
    hr = rand_images(2, 16, 16, seed=20)
    with torch.no_grad():
        model.nll(hr, lr)
    step = model.flowUpsamplerNet.layers[1]
    assert bool(step.actnorm.inited)
    from flow.layers import squeeze2d
    with torch.no_grad():
        y, _ = step.actnorm(squeeze2d(hr, 2))
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(12), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(0, 2, 3), unbiased=False), torch.ones(12), atol=1e-3, rtol=0)
