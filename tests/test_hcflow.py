"""HCFlow: keys vs the official lists, per-layer invertibility and log-dets, round trips,
the NLL constants, seeded sampling, locality, rescaling and checkpoint loading."""
import math
from pathlib import Path

import pytest
import torch

from flow import CheckpointError, load_model, save_safetensors
from flow import editing as E
from flow.models.randomize import randomize
from flow.layers.hcflow import Affine, Affine3Shift, Haar, HCStep, SqueezeLayer
from flow.models.hcflow import ConditionalFlow, HCFlow
from flow.models.hcflow_config import HC_PRESETS, HCFlowConfig, hcflow_from_official_yaml
from flow.models.hcflow_losses import dirac_lr_logp

KEYS = Path(__file__).parent / "data" / "keys"
OFFICIAL = [("hcflow_sr_df2k_4x", "hcflow_sr_df2k4x", 23_232_539),
            ("hcflow_sr_celeba_8x", "hcflow_sr_celeba8x", 27_017_723),
            ("hcflow_rescaling_df2k_4x", "hcflow_rescaling_df2k4x", 4_396_350)]


def _keys(name):
    out = []
    for line in (KEYS / f"{name}.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            k, shape = line.split("\t")
            out.append((k, tuple(int(v) for v in shape.strip("()").split(",") if v.strip())))
    return out


def _perturbed(model, std=0.02, seed=0):
    """Random non-identity weights (zero-initialised heads made non-zero, with std ``std``)."""
    return randomize(model, seed, weight_std=std).eval()


def _model(name, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return _perturbed(HCFlow(HC_PRESETS[name]).to(dtype), seed=seed)


# -- checkpoint layout ------------------------------------------------------------

@pytest.mark.parametrize("preset,keyfile,params", OFFICIAL)
def test_official_presets_match_key_lists(preset, keyfile, params):
    m = HCFlow(HC_PRESETS[preset])
    ref = _keys(keyfile)
    own = [(k, tuple(v.shape)) for k, v in m.state_dict().items()]
    assert own == ref                      # names, shapes and order
    assert sum(v.numel() for v in m.state_dict().values()) == params
    assert not list(m.buffers(recurse=True)) or all(
        n.endswith("inited") for n, _ in m.named_buffers())   # no persistent buffers


# -- per-layer invertibility and log-determinants -------------------------------

def _check_layer(layer, x, cond=None, atol=1e-9):
    layer = layer.double()
    y, ld = layer(x, cond)
    x2, ld_inv = layer.inverse(y, cond)
    assert torch.allclose(x2, x, atol=atol)
    assert torch.allclose(ld, -ld_inv, atol=1e-8)
    J = torch.autograd.functional.jacobian(lambda v: layer(v.view_as(x), cond)[0].flatten(), x.flatten())
    assert torch.allclose(ld[0], torch.linalg.slogdet(J)[1], atol=1e-7)


def _nonzero(layer, seed=1):
    """Strongly non-linear random weights for the per-layer Jacobian checks."""
    return randomize(layer, seed, weight_std=0.3)


def test_affine_coupling_bounded_scale_and_logdet():
    x = torch.randn(1, 5, 3, 3, dtype=torch.float64)
    c = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    _check_layer(_nonzero(Affine(5, 4, hidden=8)), x, c)
    _check_layer(_nonzero(Affine(6, 0, hidden=8)), torch.randn(1, 6, 3, 3, dtype=torch.float64))
    # the scale is bounded by exp(+-0.318 * pi / 2)
    a = Affine(4, 0, hidden=4).double()
    with torch.no_grad():
        a.f.conv3.bias.fill_(1e6)
    y, ld = a(torch.zeros(1, 4, 2, 2, dtype=torch.float64))
    assert ld.item() == pytest.approx(0.318 * math.pi / 2 * 8, rel=1e-5)


@pytest.mark.parametrize("lr_vs_others", [True, False])
def test_affine3shift(lr_vs_others):
    layer = _nonzero(Affine3Shift(12, lr_vs_others, growth=4))
    _check_layer(layer, torch.randn(1, 12, 2, 2, dtype=torch.float64))


def test_haar_subbands_inverse_and_logdet():
    h = Haar(3)
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64)
    y, _ = h.double()(x)
    a, b, c, d = x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    assert torch.allclose(y[:, 0:3], (a + b + c + d) / 4)          # channel k*C + c: sub-band k
    assert torch.allclose(y[:, 3:6], (a - b + c - d) / 4)
    assert torch.allclose(y[:, 6:9], (a + b - c - d) / 4)
    assert torch.allclose(y[:, 9:12], (a - b - c + d) / 4)
    _check_layer(Haar(3), torch.randn(1, 3, 2, 4, dtype=torch.float64))
    assert h.haar_weights.shape == (12, 1, 2, 2) and not h.haar_weights.requires_grad


def test_squeeze_and_flow_step():
    _check_layer(SqueezeLayer(), torch.randn(1, 3, 4, 4, dtype=torch.float64))
    step = _nonzero(HCStep(6, Affine(6, 5, hidden=8)))
    _check_layer(step, torch.randn(1, 6, 3, 3, dtype=torch.float64), torch.randn(1, 5, 3, 3, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["sr", "rescaling"])
def test_conditional_prior_density(kind):
    """steps + prior: logdet + log N(a'; mu, sigma) = log N(eps) + log|d eps / d a|."""
    cfg = HCFlowConfig(name="t", kind=kind, K=3, P=[2, 2], rrdb_nb=[1, 1], rrdb_nf=8, rrdb_gc=4, hidden=8)
    cf = _nonzero(ConditionalFlow(5, 3, 2, cfg)).double()
    a = torch.randn(1, 5, 3, 3, dtype=torch.float64)
    c = cf.features(torch.randn(1, 3, 3, 3, dtype=torch.float64))
    eps, ld, logn = cf.encode(a, c)
    J = torch.autograd.functional.jacobian(lambda v: cf.encode(v.view_as(a), c)[0].flatten(), a.flatten())
    lognorm = (-0.5 * eps ** 2 - 0.5 * math.log(2 * math.pi)).sum()
    assert (ld + logn).item() == pytest.approx((torch.linalg.slogdet(J)[1] + lognorm).item(), abs=1e-7)
    assert torch.allclose(cf.decode(eps, c), a, atol=1e-10)
    # the mode: decoding eps = 0 and encoding it back gives eps = 0, where the prior
    # density is its maximum, log N(mu; mu, sigma) = -sum(log sigma) - n/2 log(2 pi)
    mode = cf.decode(torch.zeros_like(eps), c)
    eps0, _, logn0 = cf.encode(mode, c)
    assert eps0.abs().max() < 1e-10
    mu, ls = cf.prior(c)
    assert logn0.item() == pytest.approx((-ls.sum() - 0.5 * ls.numel() * math.log(2 * math.pi)).item(), abs=1e-8)


# -- whole model --------------------------------------------------------------------

@pytest.mark.parametrize("name,hr", [("hcflow_tiny_sr_4x", 8), ("hcflow_tiny_sr_8x", 8),
                                     ("hcflow_tiny_rescaling_4x", 8)])
def test_model_logdet_equals_jacobian(name, hr):
    """Encode's logdet + prior terms = log|det d(y, eps)/dx| + log N(eps; 0, I) (float64)."""
    m = _model(name)
    x = torch.rand(1, 3, hr, hr, dtype=torch.float64)
    out = m.encode_levels(x)

    def f(v):
        o = m.encode_levels(v.view_as(x))
        return torch.cat([o["y"].flatten()] + [e.flatten() for e in o["eps"]])

    J = torch.autograd.functional.jacobian(f, x.flatten())
    eps = torch.cat([e.flatten() for e in out["eps"]])
    ref = torch.linalg.slogdet(J)[1] + (-0.5 * eps ** 2 - 0.5 * math.log(2 * math.pi)).sum()
    assert (out["logdet"] + out["logn"]).item() == pytest.approx(ref.item(), abs=1e-6)
    rec = m.decode(x[..., ::m.scale, ::m.scale], m.encode(x)[0], y=out["y"])
    assert (rec - x).abs().max() < 1e-10


@pytest.mark.parametrize("preset,hr", [("hcflow_sr_df2k_4x", 32), ("hcflow_sr_celeba_8x", 32),
                                       ("hcflow_rescaling_df2k_4x", 32)])
def test_official_architectures_round_trip(preset, hr):
    torch.set_num_threads(max(1, torch.get_num_threads()))
    torch.manual_seed(0)
    m = randomize(HCFlow(HC_PRESETS[preset]), 0, weight_std=1e-3, scale=0.5).eval()   # latents of order 1
    x = torch.rand(1, 3, hr, hr)
    with torch.no_grad():
        lat, _ = m.encode(x)
        rec = m.decode(x[..., ::m.scale, ::m.scale], lat, y=lat.top)
    assert [tuple(t.shape[1:]) for t in lat.levels] == m.latent_shapes(hr, hr)
    assert (rec - x).abs().max() < 1e-4


def test_dirac_lr_term():
    """The Dirac-LR term is log N(q(y); lr, e^-6) summed (q: 8-bit rounding, straight-through
    gradient), and it is what the LR adds to the official NLL."""
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    lr = torch.rand(2, 3, 4, 5, generator=g, dtype=torch.float64) * 0.01 + y.detach()
    q = torch.round(y.detach().clamp(0, 1) * 255) / 255
    ref = torch.distributions.Normal(lr, math.exp(-6.0)).log_prob(q).sum(dim=(1, 2, 3))
    got = dirac_lr_logp(y, lr)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-6)
    got.sum().backward()                                      # straight through the rounding
    torch.testing.assert_close(y.grad, -(q - lr) * math.exp(12.0), rtol=1e-10, atol=1e-6)
    # in the model's NLL: the bits per HR pixel with the LR minus those without it
    m = _model("hcflow_tiny_sr_4x")
    hr = torch.rand(1, 3, 16, 16, generator=g, dtype=torch.float64)
    with torch.no_grad():
        top = m.encode(hr)[0].top
        exact = torch.round(top.clamp(0, 1) * 255) / 255           # an LR the flow's y matches exactly
        d = m.nll(hr, exact).official_bpp - m.nll(hr, None).official_bpp
    per_value = 6.0 - 0.5 * math.log(2 * math.pi)                  # log N(x; x, e^-6)
    assert d.item() == pytest.approx(-per_value * 3 * 16 / (256 * math.log(2)), rel=1e-9)   # -1.374 at 4x


def test_nll_composition_and_dequantisation():
    m = _model("hcflow_tiny_sr_4x", dtype=torch.float32)
    hr = torch.rand(2, 3, 16, 16)
    lr = torch.rand(2, 3, 4, 4)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    with torch.no_grad():
        n = m.nll(hr, lr, dequantize=True, generator=g1)
        noisy = hr + torch.rand(hr.shape, generator=g2) / 64          # U[0,1)/quant, drawn first
        o = m.encode_levels(noisy)
        logp = o["logdet"] + o["logn"] + dirac_lr_logp(o["y"], lr)
    ref = -(logp - 256 * math.log(64)) / (256 * math.log(2))
    assert torch.allclose(n.official_bpp, ref, rtol=1e-5)
    # the official number for an input that already carries the noise: dequantized=True,
    # and without the flag the value is lower by exactly log2(quant) bits per pixel
    with torch.no_grad():
        pre = m.nll(noisy, lr, dequantized=True)
        plain = m.nll(noisy, lr)
    assert torch.allclose(pre.official_bpp, n.official_bpp, rtol=1e-5)
    assert torch.allclose(pre.official_bpp - plain.official_bpp, torch.full((2,), math.log2(64)), atol=1e-3)
    assert torch.allclose(pre.bits_per_dim - plain.bits_per_dim, torch.full((2,), math.log2(64)), atol=1e-3)
    with pytest.raises(ValueError):
        m.nll(noisy, lr, dequantize=True, dequantized=True)
    # without noise, encode is deterministic
    a, _ = m.encode(hr)
    b, _ = m.encode(hr)
    assert a.equal(b)


def test_seeded_sampling_matches_official_draw_order():
    m = _model("hcflow_tiny_sr_4x", dtype=torch.float32)
    lr = torch.rand(1, 3, 5, 6)
    s1 = m.sample(lr, 0.8, seed=11, n=2)
    s2 = m.sample(lr, 0.8, seed=11, n=2)
    assert torch.equal(s1, s2)
    assert not torch.equal(s1[0], s1[1])
    # the official sampler: global RNG, normal draws top level first, one tau for all levels
    torch.manual_seed(11)
    shapes = m.latent_shapes(20, 24)
    drawn = {l: torch.randn((1,) + shapes[l]) * 0.8 for l in reversed(range(2))}
    with torch.no_grad():
        ref = m.decode(lr, [drawn[0], drawn[1]])
    assert torch.equal(m.sample(lr, 0.8, seed=11, n=1), ref)      # bit-identical draws
    assert torch.allclose(s1[:1], ref, atol=1e-5)                   # batched: same up to conv rounding
    assert s1.shape == (2, 3, 20, 24)                              # no padding needed (odd LR sizes)


def test_level0_latents_are_local_coarser_are_global():
    """The documented difference to SRFlow: only the finest level edits locally."""
    m = _model("hcflow_tiny_sr_4x", dtype=torch.float64)
    lr = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    cond = m.encode_condition(lr)
    lat = m.draw_latents(cond, 0.8, 0)
    base = m.decode(cond, lat)
    frac = {}
    for level in (0, 1):
        z = lat.clone()
        z.levels[level][..., 4, 4] += 1.0
        diff = (m.decode(cond, z) - base).abs().amax(dim=1)[0] > 1e-9
        frac[level] = diff.float().mean().item()
        if level == 0:
            ys, xs = torch.nonzero(diff, as_tuple=True)
            assert (ys.max() - ys.min()) < 40 and (xs.max() - xs.min()) < 40
    # one level-1 latent reaches through the level-0 extractor: a far larger support
    # (the official-size extractors, 14 RRDBs, reach every pixel of a 192^2 image)
    assert 0 < frac[0] < 0.2 and frac[1] > 3 * frac[0], frac


def test_editing_tools_on_hcflow():
    m = _model("hcflow_tiny_sr_4x", dtype=torch.float32)
    lr = torch.rand(1, 3, 8, 8)
    cond = m.encode_condition(lr)
    lat = m.draw_latents(cond, 0.8, 0)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[8:16, 8:16] = True
    masks = E.level_masks(mask, lat)
    res = E.resample_region(lat, masks, 0.8, seed=3)
    assert not res.equal(lat)
    assert torch.equal(res.levels[0][..., 0, 0], lat.levels[0][..., 0, 0])     # outside the mask
    other = m.draw_latents(cond, 0.8, 9)
    assert not E.take_region(lat, other, masks).equal(lat)
    for mode in ("global", "local", "spatial"):
        n = E.normalize(lat, mode=mode, temperature=0.8, seed=0)
        out = n[0] if isinstance(n, tuple) else n
        assert torch.isfinite(m.decode(cond, out)).all()
    hr = m.decode(cond, lat).clamp(0, 1)
    style = E.style_latents(m, hr)
    assert torch.isfinite(m.decode(cond, E.style_transfer(lat, style))).all()


def test_rescaling_api():
    m = _model("hcflow_tiny_rescaling_4x", dtype=torch.float32)
    hr = torch.rand(1, 3, 24, 32)
    lr = m.downscale(hr)
    assert lr.shape == (1, 3, 6, 8)
    assert torch.equal(lr, torch.round(lr * 255) / 255)              # 8-bit
    lat, _ = m.encode(hr)
    assert torch.equal(lr, torch.round(lat.top.clamp(0, 1) * 255) / 255)   # the encode's y, quantised
    lr2, rec = m.rescale_roundtrip(hr)
    assert torch.equal(lr, lr2) and rec.shape == hr.shape
    with torch.no_grad():                                       # upscale = the tau 0 decode of that LR
        ref = m.decode(lr, [torch.zeros_like(t) for t in lat.levels]).clamp(0, 1)
    torch.testing.assert_close(rec, ref, rtol=0, atol=1e-6)
    assert not torch.equal(m.upscale(lr, temperature=0.8, seed=1), rec)
    # the rescaling prior's log-std is bounded (0.318 atan), the SR one's is not
    sr = _model("hcflow_tiny_sr_4x", dtype=torch.float32)
    for model, bounded in ((m, True), (sr, False)):
        cf = model.flow.cond_flow(1)
        with torch.no_grad():
            cf.f.bias.fill_(50.0)
            cf.f.logs.zero_()
            _, ls = cf.prior(torch.zeros(1, cf.f.weight.shape[1], 2, 2))
        assert (ls.max().item() < 0.318 * math.pi / 2) == bounded, ls.max()


def test_rescaling_loss_at_tau0_is_the_roundtrip_l1():
    """At ``tau = 0`` the training reconstruction is exactly what ``rescale_roundtrip``
    (the evaluated metric) returns; at ``tau = 1`` it is a different, noisy one."""
    m = _model("hcflow_tiny_rescaling_4x", dtype=torch.float32)
    hr = torch.rand(2, 3, 16, 24)
    lr_bic = torch.rand(2, 3, 4, 6)
    with torch.no_grad():
        _, rec = m.rescale_roundtrip(hr)
        want = torch.nn.functional.l1_loss(rec, hr).item()
        loss0, p0 = m.rescaling_loss(hr, lr_bic, tau=0.0, generator=torch.Generator().manual_seed(1))
        _, p1 = m.rescaling_loss(hr, lr_bic, tau=1.0, generator=torch.Generator().manual_seed(1))
    assert p0["hr_l1"].item() == pytest.approx(want, rel=1e-5)
    assert abs(p1["hr_l1"].item() - want) > 1e-4
    parts = 0.05 * p0["lr_l2"] + 1e-5 * p0["z_l2"] + p0["hr_l1"]
    assert loss0.item() == pytest.approx(parts.item(), rel=1e-6)


# -- checkpoints ------------------------------------------------------------------

def test_load_official_pth_and_safetensors(tmp_path):
    m = _model("hcflow_tiny_sr_4x", dtype=torch.float32)
    sd = {"module." + k: v for k, v in m.state_dict().items()}
    torch.save(sd, tmp_path / "SR_tiny.pth")
    lr = torch.rand(1, 3, 6, 6)
    ref = m.sample(lr, 0.7, seed=2)
    got = load_model(tmp_path / "SR_tiny.pth", config="hcflow_tiny_sr_4x", device="cpu")
    assert isinstance(got, HCFlow) and torch.equal(got.sample(lr, 0.7, seed=2), ref)
    save_safetensors(got, tmp_path / "m.safetensors")
    again = load_model(tmp_path / "m.safetensors", device="cpu")
    assert again.cfg == got.cfg and torch.equal(again.sample(lr, 0.7, seed=2), ref)
    with pytest.raises(CheckpointError, match="does not match"):
        load_model(tmp_path / "SR_tiny.pth", config="hcflow_tiny_sr_8x", device="cpu")
    with pytest.raises(CheckpointError, match="HCFlow"):
        load_model(tmp_path / "SR_tiny.pth", config="tiny_4x", device="cpu")
    # older naming (flowDownpsamplerNet) is renamed on load
    old = {k.replace("flow.", "flowDownpsamplerNet.", 1): v for k, v in m.state_dict().items()}
    torch.save(old, tmp_path / "old.pth")
    assert torch.equal(load_model(tmp_path / "old.pth", config="hcflow_tiny_sr_4x", device="cpu")
                       .sample(lr, 0.7, seed=2), ref)


def test_haar_constants_are_checked(tmp_path):
    m = HCFlow(HC_PRESETS["hcflow_tiny_rescaling_4x"])
    sd = m.state_dict()
    sd["flow.layers.0.haar_weights"] = sd["flow.layers.0.haar_weights"] * 2
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="Haar"):
        load_model(tmp_path / "bad.pth", config="hcflow_tiny_rescaling_4x", device="cpu")


def test_official_yaml_fixture(tmp_path):
    """Our own minimal option file in the official layout builds the preset architectures."""
    y = tmp_path / "sr.yml"
    y.write_text("scale: 4\nquant: 64\nnetwork_G:\n  which_model_G: HCFlowNet_SR\n  flowDownsampler:\n"
                 "    K: 26\n    L: 2\n    flow_permutation: invconv\n    flow_coupling: Affine\n"
                 "    nn_module: FCN\n    hidden_channels: 64\n    splitOff:\n      enable: true\n"
                 "      after_flowstep: [13, 13]\n      hidden_channels: 64\n      RRDB_nb: [7, 7]\n"
                 "      RRDB_nf: 64\n      RRDB_gc: 32\n")
    import yaml
    cfg = hcflow_from_official_yaml(yaml.safe_load(y.read_text()))
    assert cfg == HC_PRESETS["hcflow_sr_df2k_4x"]
    m = HCFlow(HC_PRESETS["hcflow_sr_df2k_4x"])
    torch.save(m.state_dict(), tmp_path / "SR_DF2K_X4_HCFlow.pth")
    got = load_model(tmp_path / "SR_DF2K_X4_HCFlow.pth", config=y, device="cpu")
    assert got.cfg.name == "hcflow_sr_df2k_4x"
