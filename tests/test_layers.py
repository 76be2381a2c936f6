"""Invertible layers: exact inverses, log-determinants against brute-force Jacobians,
the official squeeze channel order, ActNorm data-dependent init and the coupling's
scale/shift formula (issue #3)."""
import math

import pytest
import torch
from torch.autograd.functional import jacobian

from conftest import randomize
from flow.layers import (ActNorm, CondAffine, FlowStep, InvConv1x1, Split, Squeeze,
                         gaussian_logp, squeeze2d, unsqueeze2d)

D = torch.float64
COND_C = 3
STYLES = {  # style -> CondAffine kwargs (small hidden sizes, same structure as the presets)
    "srflow": dict(style="srflow", hidden=8, n_hidden=1, k_hidden=1),
    "da": dict(style="da", hidden=8, n_hidden=2, k_hidden=3),
    "da-r": dict(style="da-r", hidden=8, n_hidden=2, k_hidden=3),
    "da-d": dict(style="da-d", hidden=8, n_hidden=4, k_hidden=3),
}


def _x(shape=(1, 4, 4, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=D)


def _cond(seed=1, shape=(1, COND_C, 4, 4)):
    return _x(shape, seed)


def _flat(out):
    if isinstance(out, (tuple, list)):
        return torch.cat([t.reshape(-1) for t in out])
    return out.reshape(-1)


def _check_layer(layer, x, cond=None, tol=1e-10):
    """inverse(forward(x)) == x, inverse logdet == -forward logdet, and the forward
    logdet equals log|det J| of the map computed by autograd."""
    layer = layer.to(D).eval()
    with torch.no_grad():
        y, ld = layer(x, cond)
        x_rec, ld_inv = layer.inverse(y, cond)
    assert ld.shape == (x.shape[0],)
    torch.testing.assert_close(x_rec, x, atol=tol, rtol=0)
    torch.testing.assert_close(ld_inv, -ld, atol=1e-9, rtol=1e-9)
    J = jacobian(lambda t: _flat(layer(t, cond)[0]), x)
    J = J.reshape(J.shape[0], -1)
    assert J.shape[0] == J.shape[1] == x.numel()
    sign, logabs = torch.linalg.slogdet(J)
    assert sign != 0
    assert ld.item() == pytest.approx(logabs.item(), abs=1e-8, rel=1e-9)
    return y, ld


# ---------------------------------------------------------------------------
# inverse + log-determinant for every invertible layer
# ---------------------------------------------------------------------------

def test_actnorm_inverse_and_logdet():
    layer = randomize(ActNorm(4), seed=3)
    with torch.no_grad():
        layer.logs.add_(torch.tensor([0.3, -0.1, 0.2, 0.4]).view(1, 4, 1, 1))
    _, ld = _check_layer(layer, _x())
    assert abs(ld.item()) > 0.1          # non-trivial: the Jacobian check means something
    assert ld.item() == pytest.approx(layer.logs.sum().item() * 16, rel=1e-12)


@pytest.mark.parametrize("lu", [False, True], ids=["plain", "lu"])
def test_invconv_inverse_and_logdet(lu):
    torch.manual_seed(5)
    layer = InvConv1x1(4, lu=lu)
    with torch.no_grad():   # make the determinant non-trivial (QR matrices have |det| = 1)
        if lu:
            layer.log_s.add_(torch.tensor([0.3, -0.2, 0.1, 0.25]))
        else:
            layer.weight.mul_(torch.tensor([1.3, 0.8, 1.1, 1.25])[:, None])
    _, ld = _check_layer(layer, _x())
    assert abs(ld.item()) > 1.0
    torch.testing.assert_close(layer.logabsdet(), torch.linalg.slogdet(layer.matrix())[1])


def test_invconv_inverse_in_float32_uses_double_inversion():
    torch.manual_seed(0)
    layer = InvConv1x1(48).eval()
    x = torch.randn(2, 48, 3, 3)
    with torch.no_grad():
        y, _ = layer(x)
        x_rec, _ = layer.inverse(y)
    assert x_rec.dtype == torch.float32
    assert (x_rec - x).abs().max() < 1e-5


def test_invconv_inverse_cache_follows_weight_updates():
    torch.manual_seed(0)
    layer = InvConv1x1(4)
    x = torch.randn(1, 4, 2, 2)
    with torch.no_grad():
        y, _ = layer(x)
        layer.inverse(y)                                     # fills the cache
        layer.weight.mul_(torch.tensor([2.0, 1.0, 0.5, 1.5])[:, None])   # in-place update
        y2, _ = layer(x)
        x_rec, _ = layer.inverse(y2)
    torch.testing.assert_close(x_rec, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("factor", [2, 4])
def test_squeeze_inverse_and_logdet(factor):
    layer = Squeeze(factor)
    x = _x((1, 2, 8, 8))
    y, ld = _check_layer(layer, x, tol=0)
    assert y.shape == (1, 2 * factor * factor, 8 // factor, 8 // factor)
    assert ld.item() == 0


@pytest.mark.parametrize("factor", [2, 4])
def test_squeeze_channel_order_official(factor):
    """Output channel c*f*f + f*dy + dx holds input pixel (c, i*f + dy, j*f + dx)."""
    b, c, h, w = 2, 3, 2 * factor, 3 * factor
    x = torch.arange(b * c * h * w, dtype=torch.float32).view(b, c, h, w)
    y = squeeze2d(x, factor)
    assert y.shape == (b, c * factor * factor, h // factor, w // factor)
    for n in range(b):
        for ch in range(c):
            for dy in range(factor):
                for dx in range(factor):
                    out_c = ch * factor * factor + factor * dy + dx
                    for i in range(h // factor):
                        for j in range(w // factor):
                            assert y[n, out_c, i, j] == x[n, ch, i * factor + dy, j * factor + dx]
    assert torch.equal(unsqueeze2d(y, factor), x)


def test_squeeze_channel_order_small_literal():
    # a hand-written case: 1 channel, 2x2 -> 4 channels [x00, x01, x10, x11]
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    assert squeeze2d(x, 2).flatten().tolist() == [0.0, 1.0, 2.0, 3.0]
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert squeeze2d(x, 2)[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]
    assert squeeze2d(x, 2)[0, :, 1, 1].tolist() == [10.0, 11.0, 14.0, 15.0]


def test_squeeze_rejects_indivisible_size():
    with pytest.raises(ValueError):
        squeeze2d(torch.zeros(1, 3, 6, 5), 2)


@pytest.mark.parametrize("style", list(STYLES))
def test_cond_affine_inverse_and_logdet(style):
    torch.manual_seed(7)
    layer = randomize(CondAffine(4, COND_C, **STYLES[style]), seed=11, weight_std=0.05)
    x, cond = _x(), _cond()
    y, ld = _check_layer(layer, x, cond)
    assert (y - x).abs().max() > 0.05      # the coupling actually transforms x
    # the precomputed (cached) conditioning path gives the same numbers
    with torch.no_grad():
        cache = layer.precompute(cond)
        y_c, ld_c = layer(x, cache)
        x_c, ld_ci = layer.inverse(y, cache)
    torch.testing.assert_close(y_c, y, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(ld_c, ld, atol=1e-10, rtol=0)
    torch.testing.assert_close(x_c, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(ld_ci, -ld, atol=1e-10, rtol=0)


@pytest.mark.parametrize("style", list(STYLES))
def test_cond_affine_depends_on_z1_and_cond(style):
    """Both the injector (cond only) and the coupling (z1 + cond) must matter."""
    torch.manual_seed(7)
    layer = randomize(CondAffine(4, COND_C, **STYLES[style]), seed=11, weight_std=0.05).to(D).eval()
    x, cond = _x(), _cond()
    with torch.no_grad():
        y, _ = layer(x, cond)
        y_c, _ = layer(x, _cond(seed=9))
        x2 = x.clone()
        x2[:, :2] += 0.5                           # change z1 only
        y2, _ = layer(x2, cond)
    assert (y_c - y).abs().max() > 1e-4
    assert (y2[:, 2:] - y[:, 2:]).abs().max() > 1e-4   # z2's transform depends on z1


@pytest.mark.parametrize("conditional", [False, True], ids=["transition", "conditional"])
@pytest.mark.parametrize("lu", [False, True], ids=["plain", "lu"])
def test_flowstep_inverse_and_logdet(conditional, lu):
    torch.manual_seed(3)
    step = FlowStep(4, COND_C if conditional else None, lu=lu, **STYLES["srflow"])
    randomize(step, seed=4, weight_std=0.05)
    cond = _cond() if conditional else None
    _, ld = _check_layer(step, _x(), cond)
    assert abs(ld.item()) > 0.1


def test_flowstep_order_is_actnorm_invconv_coupling():
    torch.manual_seed(3)
    step = randomize(FlowStep(4, COND_C, **STYLES["srflow"]), seed=4, weight_std=0.05).to(D).eval()
    x, cond = _x(), _cond()
    with torch.no_grad():
        y, ld = step(x, cond)
        h, l1 = step.actnorm(x)
        h, l2 = step.invconv(h)
        h, l3 = step.affine(h, cond)
    torch.testing.assert_close(y, h, atol=0, rtol=0)
    torch.testing.assert_close(ld, l1 + l2 + l3)


def test_split_inverse_and_logdet():
    """The bijection is x -> (z1, eps); its log|det J| is the layer's logdet."""
    torch.manual_seed(2)
    layer = randomize(Split(4), seed=5, weight_std=0.2).to(D).eval()
    x = _x()
    with torch.no_grad():
        (z1, eps), ld = layer(x)
        x_rec, ld_inv = layer.inverse((z1, eps))
    torch.testing.assert_close(x_rec, x, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld_inv, -ld)
    torch.testing.assert_close(z1, x[:, :2], atol=0, rtol=0)
    J = jacobian(lambda t: _flat(layer(t)[0]), x).reshape(x.numel(), -1)
    assert ld.item() == pytest.approx(torch.linalg.slogdet(J)[1].item(), abs=1e-9)
    assert abs(ld.item()) > 0.1
    # logdet + log N(eps) is the official log N(z2; mean, exp(logs)) with the cross split
    h = layer.conv(z1)
    mean, logs = h[:, 0::2], h[:, 1::2]
    z2 = x[:, 2:]
    official = (-0.5 * (math.log(2 * math.pi) + 2 * logs + (z2 - mean) ** 2 / torch.exp(2 * logs))).sum()
    assert (ld + gaussian_logp(eps)).item() == pytest.approx(official.item(), rel=1e-10)


def test_split_odd_channels_and_sampling_inverse():
    layer = randomize(Split(6), seed=1, weight_std=0.2).to(D).eval()
    x = _x((2, 6, 2, 2))
    with torch.no_grad():
        (z1, eps), _ = layer(x)
        assert z1.shape == (2, 3, 2, 2) and eps.shape == (2, 3, 2, 2)
        e2 = torch.randn_like(eps)
        x2, _ = layer.inverse((z1, e2))
        (z1b, e2b), _ = layer(x2)
    torch.testing.assert_close(e2b, e2, atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------
# ActNorm data-dependent init
# ---------------------------------------------------------------------------

def test_actnorm_data_init_first_train_batch():
    torch.manual_seed(0)
    an = ActNorm(3).train()
    x = torch.randn(4, 3, 5, 5) * torch.tensor([2.0, 0.5, 3.0])[:, None, None] \
        + torch.tensor([1.0, -2.0, 5.0])[:, None, None]
    y, ld = an(x)
    mean = y.mean(dim=(0, 2, 3))
    std = y.std(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(mean, torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(std, torch.ones(3), atol=1e-4, rtol=0)
    assert an.logs.abs().min() > 0.1 and ld.abs().min() > 1
    # the second train batch does not re-initialise
    bias, logs = an.bias.detach().clone(), an.logs.detach().clone()
    an(torch.randn(4, 3, 5, 5) * 10)
    assert torch.equal(an.bias, bias) and torch.equal(an.logs, logs)


def test_actnorm_no_init_in_eval_mode():
    an = ActNorm(3).eval()
    x = torch.randn(2, 3, 4, 4) * 3 + 1
    y, ld = an(x)
    assert torch.equal(y, x) and torch.equal(ld, torch.zeros(2))
    assert not bool(an.inited)


def test_actnorm_init_skipped_after_load_state_dict():
    src = ActNorm(3)           # all-zero parameters: only the load itself may block init
    an = ActNorm(3)
    an.load_state_dict(src.state_dict())
    an.train()
    x = torch.randn(2, 3, 4, 4) * 3 + 1
    y, _ = an(x)
    assert torch.equal(y, x)
    assert torch.all(an.bias == 0) and torch.all(an.logs == 0)
    assert "inited" not in an.state_dict()      # not part of the checkpoint format


def test_actnorm_partial_load_keeps_data_init():
    """A strict=False load without this layer's keys (e.g. RRDB-only weights into a
    fresh model) must not disable its data-dependent init."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), ActNorm(3))
    model.load_state_dict({"0.weight": torch.eye(3)[:, :, None, None], "0.bias": torch.zeros(3)},
                          strict=False)
    model.train()
    y = model(torch.randn(4, 3, 5, 5) * 4 + 2)
    y = y[0] if isinstance(y, tuple) else y
    assert y.mean().abs() < 1e-5 and model[1].logs.abs().min() > 0.1


def test_actnorm_init_skipped_when_bias_nonzero():
    an = ActNorm(2)
    with torch.no_grad():
        an.bias.fill_(0.5)
    an.train()
    x = torch.randn(2, 2, 3, 3)
    y, _ = an(x)
    torch.testing.assert_close(y, x + 0.5)


# ---------------------------------------------------------------------------
# the coupling formula, numerically
# ---------------------------------------------------------------------------

def _set_constant_output(zero_conv, values, logs):
    with torch.no_grad():
        zero_conv.weight.zero_()
        zero_conv.bias.copy_(torch.as_tensor(values, dtype=zero_conv.bias.dtype))
        zero_conv.logs.fill_(logs)


@pytest.mark.parametrize("style", ["srflow", "da"])
def test_coupling_formula_sigmoid_shift_then_scale_cross(style):
    """h_ft = b_ft * exp(3 logs) (constant), shift = h[0::2], scale = sigmoid(h[1::2]+2)+1e-4,
    z = (x + shift) * scale; then z2 = (z2 + shift') * scale' with the coupling's h'."""
    C = 6
    layer = CondAffine(C, COND_C, **STYLES[style]).to(D).eval()
    b_ft = torch.linspace(-1.5, 2.0, 2 * C, dtype=D) * torch.tensor([1.0, -1.0] * C, dtype=D)
    b_af = torch.linspace(0.7, -1.1, 2 * (C - C // 2), dtype=D)
    _set_constant_output(layer.fFeatures_net.tail, b_ft, 0.1)
    _set_constant_output(layer.fAffine_net.tail, b_af, -0.2)
    x, cond = _x((2, C, 3, 3)), _cond(shape=(2, COND_C, 3, 3))
    with torch.no_grad():
        y, ld = layer(x, cond)

    sig = lambda t: 1.0 / (1.0 + torch.exp(-t))  # noqa: E731
    h_ft = b_ft * math.exp(3 * 0.1)
    h_af = b_af * math.exp(3 * -0.2)
    shift_ft, scale_ft = h_ft[0::2], sig(h_ft[1::2] + 2.0) + 1e-4
    shift_af, scale_af = h_af[0::2], sig(h_af[1::2] + 2.0) + 1e-4
    v = lambda t: t.view(1, -1, 1, 1)  # noqa: E731
    z = (x + v(shift_ft)) * v(scale_ft)
    expected = torch.cat([z[:, :C // 2], (z[:, C // 2:] + v(shift_af)) * v(scale_af)], dim=1)
    torch.testing.assert_close(y, expected, atol=1e-12, rtol=1e-12)
    exp_ld = 9 * (torch.log(scale_ft).sum() + torch.log(scale_af).sum())
    torch.testing.assert_close(ld, exp_ld.expand(2), atol=1e-10, rtol=1e-12)
    assert layer.eps == 1e-4


def test_coupling_zero_init_is_constant_sigmoid2_scale():
    """With the zero convs at their initial zeros, the step is x * sigmoid(2) (+eps) on
    every channel (injector) and again on the second half (coupling)."""
    layer = CondAffine(4, COND_C, **STYLES["srflow"]).to(D).eval()
    x, cond = _x(), _cond()
    s = 1.0 / (1.0 + math.exp(-2.0)) + 1e-4
    with torch.no_grad():
        y, ld = layer(x, cond)
    torch.testing.assert_close(y[:, :2], x[:, :2] * s, atol=1e-12, rtol=0)
    torch.testing.assert_close(y[:, 2:], x[:, 2:] * s * s, atol=1e-12, rtol=0)
    assert ld.item() == pytest.approx(16 * 6 * math.log(s), rel=1e-12)


# -- Winograd kernel and folded inference parameters ------------------------------------------

@pytest.mark.parametrize("H,W,split", [(20, 14, None), (17, 9, None), (24, 16, 5), (22, 30, 3)])
def test_winograd_multi_band_equals_direct_convolution(H, W, split):
    """conv3x3_winograd on several bands of tiles and several output-channel chunks (small
    ``band_tiles``/``chunk``), NCHW and channels-last outputs split in two, odd sizes, and
    nearest-upsampled channels (``split``: the skipped products) = F.conv2d, padding 1."""
    from flow.layers.winograd import conv3x3_winograd, winograd_weight

    g = torch.Generator().manual_seed(H * W)
    N, C, O = 2, 8, 12
    x = torch.randn(N, C, H, W, generator=g, dtype=torch.float64)
    if split is not None:     # channels [split:] nearest-upsampled x2 (even H and W)
        low = torch.randn(N, C - split, H // 2, W // 2, generator=g, dtype=torch.float64)
        x[:, split:] = torch.nn.functional.interpolate(low, scale_factor=2, mode="nearest")
    w = torch.randn(O, C, 3, 3, generator=g, dtype=torch.float64)
    ref = torch.nn.functional.conv2d(x, w, padding=1)
    u = winograd_weight(w)
    for band_tiles, chunk in ((4, 5), (7, 12), (1024, 512)):
        out = conv3x3_winograd(x, u, split, band_tiles=band_tiles, chunk=chunk)[0]
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
        parts = [torch.empty(N, 5, H, W, dtype=x.dtype).contiguous(memory_format=torch.channels_last),
                 torch.empty(N, O - 5, H, W, dtype=x.dtype).contiguous(memory_format=torch.channels_last)]
        conv3x3_winograd(x, u, split, outs=parts, band_tiles=band_tiles, chunk=chunk)
        torch.testing.assert_close(torch.cat(parts, 1), ref, rtol=0, atol=1e-10)
    if split is not None:     # a split that does not hold (no duplicated rows) is detected: still exact
        y = torch.randn(N, C, H, W, generator=g, dtype=torch.float64)
        torch.testing.assert_close(conv3x3_winograd(y, u, split, band_tiles=4, chunk=5)[0],
                                   torch.nn.functional.conv2d(y, w, padding=1), rtol=0, atol=1e-10)


@pytest.mark.parametrize("style", ["srflow", "da"])
def test_folded_parameters_follow_an_optimizer_step(style):
    """The folded inference parameters are rebuilt after the weights change in place: a
    cached, eval-mode decode after an optimizer step equals the autograd-path (unfolded)
    result of the new weights, and differs from the one before the step."""
    torch.manual_seed(0)
    layer = randomize(CondAffine(4, COND_C, **STYLES[style]), seed=11, weight_std=0.05).double()
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    cond = torch.randn(1, COND_C, 6, 6, dtype=torch.float64)

    def fast():            # eval, no autograd, cached condition: the folded path
        layer.eval()
        with torch.no_grad():
            return layer.inverse(x, layer.precompute(cond))[0]

    def reference():       # the autograd path never folds
        layer.eval()
        with torch.enable_grad():
            return layer.inverse(x, cond.expand(2, -1, -1, -1))[0].detach()

    before = fast()
    torch.testing.assert_close(before, reference(), rtol=0, atol=1e-10)
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)
    layer.train()
    loss = layer(x, cond.expand(2, -1, -1, -1))[0].pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = fast()
    torch.testing.assert_close(after, reference(), rtol=0, atol=1e-10)
    assert (after - before).abs().max() > 1e-4
