"""Tests for flow.ops.imresize (MATLAB bicubic port)."""
import numpy as np
import pytest
from PIL import Image

from flow.ops.imresize import (cubic, downscale, imresize, imresize_torch,
                           resize_matrix, resize_weights)

# Keys cubic (a=-0.5) at the offsets a x1/2 pass needs, by hand:
#  k(0.25) = 1.5/64 - 2.5/16 + 1            = 0.8671875
#  k(0.75) = 1.5*27/64 - 2.5*9/16 + 1       = 0.2265625
#  k(1.25) = -0.5*125/64 + 2.5*25/16 - 5 + 2 = -0.0703125
#  k(1.75) = -0.5*343/64 + 2.5*49/16 - 7 + 2 = -0.0234375
K025, K075, K125, K175 = 0.8671875, 0.2265625, -0.0703125, -0.0234375


def _smooth_image(n=160, seed=0, sigma=1.0):
    import cv2

    rng = np.random.default_rng(seed)
    x = cv2.GaussianBlur(rng.uniform(0, 255, (n, n, 3)), (0, 0), sigma)
    return np.clip(np.around(x), 0, 255).astype(np.uint8)


def test_kernel_values():
    np.testing.assert_allclose(cubic(np.array([0.25, 0.75, 1.25, 1.75, -1.75])),
                               [K025, K075, K125, K175, K175], atol=0)
    assert np.all(cubic(np.array([1.0, 2.0, 2.5, -3.0])) == 0)
    assert cubic(np.array([0.0]))[0] == 1.0


def test_constant_image_stays_constant():
    img = np.full((37, 45, 3), 117, np.uint8)
    for s in (1 / 4, 1 / 3, 0.5, 2, 4):
        out = imresize(img, s)
        assert np.all(out == 117), s
    f = np.full((20, 24), 0.3)
    for s in (1 / 4, 1 / 3, 0.7, 1.5):  # non-integer 1/scale needs the normalisation
        np.testing.assert_allclose(imresize(f, s), 0.3, rtol=0, atol=1e-12)


def test_output_size_is_ceil():
    assert imresize(np.zeros((45, 45), np.uint8), 1 / 4).shape == (12, 12)
    assert imresize(np.zeros((45, 46, 3)), 1 / 4).shape == (12, 12, 3)
    assert imresize(np.zeros((9, 10)), 1 / 3).shape == (3, 4)
    assert imresize(np.zeros((10, 7)), output_shape=(5, 3)).shape == (5, 3)
    assert downscale(np.zeros((64, 32, 3), np.uint8), 8).shape == (8, 4, 3)


def test_hand_computed_4_to_2():
    # 1-D column [a,b,c,d] halved.  Out 1: u=1.5, taps at 1-based positions
    # -2..5 at distances 3.5..-3.5 -> weights k(d/2)/2; mirror maps -2,-1,0 ->
    # 3,2,1 and 5 -> 4.  Out 2: u=3.5, taps 0..7; 0 -> 1, 5,6,7 -> 4,3,2.
    a, b, c, d = 10.0, 50.0, 20.0, 200.0
    exp0 = (K175 * c + K125 * b + K075 * a + K025 * a
            + K025 * b + K075 * c + K125 * d + K175 * d) / 2
    exp1 = (K175 * a + K125 * a + K075 * b + K025 * c
            + K025 * d + K075 * d + K125 * c + K175 * b) / 2
    col = np.array([[a], [b], [c], [d]])
    out = imresize(col, (0.5, 1.0))
    assert out.shape == (2, 1)
    np.testing.assert_allclose(out[:, 0], [exp0, exp1], rtol=0, atol=1e-12)
    # in 1/128ths: out1 = (70a + 51b + 13c - 6d)/128
    assert exp0 == pytest.approx((70 * a + 51 * b + 13 * c - 6 * d) / 128)


def test_hand_computed_8_to_2():
    # x1/4: h(x) = k(x/4)/4, width 16.  Output 1 sits at u = 4 + 0.5*(1-4) = 2.5,
    # output 2 at u = 6.5.  Build the weights independently and mirror by hand.
    col = np.array([3.0, 9.0, 27.0, 81.0, 5.0, 25.0, 125.0, 1.0])

    def k(x):
        x = abs(x)
        if x <= 1:
            return 1.5 * x ** 3 - 2.5 * x ** 2 + 1
        if x <= 2:
            return -0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2
        return 0.0

    def mirror(i):  # 1-based MATLAB 'symmetric' for n = 8
        while i < 1 or i > 8:
            i = 1 - i if i < 1 else 17 - i
        return i

    expected = []
    for u in (2.5, 6.5):
        taps = [(k((u - j) / 4) / 4, mirror(j)) for j in range(-10, 20)]
        total = sum(w for w, _ in taps)
        expected.append(sum(w * col[i - 1] for w, i in taps) / total)
    out = imresize(col[:, None], (0.25, 1.0))[:, 0]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    w, idx = resize_weights(8, 2, 0.25)
    assert w.shape == (2, 16)  # 18 taps, both outer ones exactly zero -> dropped
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-15)


def test_uint8_rounds_half_to_even_per_pass():
    # [1,4,4,1] halved gives exactly (70+204+52-6)/128 = 2.5 at both outputs.
    col = np.array([[1], [4], [4], [1]], np.uint8)
    np.testing.assert_array_equal(imresize(col.astype(np.float64), (0.5, 1.0))[:, 0],
                                  [2.5, 2.5])
    np.testing.assert_array_equal(imresize(col, (0.5, 1.0))[:, 0], [2, 2])  # not 3


def test_uint8_per_pass_rounding_differs_from_float_once():
    # Rows pass first (equal scales): columns 0,1 -> 2.5 (float) vs 2 (uint8).
    img = np.array([[1, 1, 4, 4], [4, 4, 4, 4], [4, 4, 4, 4], [1, 1, 4, 4]], np.uint8)
    u8 = imresize(img, 0.5)
    fl = imresize(img.astype(np.float64), 0.5)
    # float: (121*2.5 + 7*4)/128 = 2.58 -> 3 ; uint8: (121*2 + 7*4)/128 = 2.11 -> 2
    assert fl[0, 0] == pytest.approx((121 * 2.5 + 7 * 4) / 128)
    assert np.around(fl[0, 0]) == 3
    assert u8[0, 0] == 2
    assert u8.dtype == np.uint8
    # Explicit two-pass reference with the folded matrices.
    a = resize_matrix(4, 2, 0.5)
    step = np.around(np.clip(a @ img.astype(np.float64), 0, 255))
    ref = np.around(np.clip(step @ a.T, 0, 255))
    np.testing.assert_array_equal(u8, ref)


def test_dtypes_preserved():
    x = np.random.default_rng(1).uniform(0, 1, (16, 12, 3))
    assert imresize(x.astype(np.float32), 0.5).dtype == np.float32
    assert imresize(x, 0.5).dtype == np.float64
    assert imresize((x * 255).astype(np.uint8), 0.5).dtype == np.uint8


def test_resize_matrix_reproduces_float_path():
    rng = np.random.default_rng(2)
    y = rng.uniform(0, 255, (45, 38))
    for s in (1 / 4, 1 / 2, 3.0):
        ah = resize_matrix(45, scale=s)
        aw = resize_matrix(38, scale=s)
        np.testing.assert_allclose(ah @ y @ aw.T, imresize(y, s), rtol=0, atol=1e-9)
        np.testing.assert_allclose(ah.sum(axis=1), 1.0, atol=1e-12)
    # colour: same matrices per channel
    yc = rng.uniform(0, 1, (24, 16, 3))
    ah, aw = resize_matrix(24, scale=0.25), resize_matrix(16, scale=0.25)
    ref = np.einsum("ij,jkc,lk->ilc", ah, yc, aw)
    np.testing.assert_allclose(imresize(yc, 0.25), ref, atol=1e-12)


def test_torch_helper_matches_numpy_float_path():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (2, 3, 20, 28)).astype(np.float32)
    for s in (0.25, 4):
        out = imresize_torch(torch.from_numpy(x), s)
        assert out.dtype == torch.float32
        ref = np.stack([np.moveaxis(imresize(np.moveaxis(im, 0, -1).astype(np.float64), s),
                                    -1, 0) for im in x])
        assert out.shape == ref.shape
        assert np.max(np.abs(out.numpy() - ref)) < 2e-6
    out64 = imresize_torch(torch.from_numpy(x.astype(np.float64)), 0.25)
    ref = np.stack([np.moveaxis(imresize(np.moveaxis(im, 0, -1).astype(np.float64), 0.25),
                                -1, 0) for im in x])
    assert np.max(np.abs(out64.numpy() - ref)) < 1e-12
    t = torch.from_numpy(x).requires_grad_(True)
    imresize_torch(t, 0.5).sum().backward()
    assert t.grad is not None and t.grad.shape == t.shape


@pytest.mark.parametrize("s", [4, 8])
def test_agrees_with_pil_bicubic_downscale(s):
    # Measured (sigma=1, seed 0): x1/4 mean 0.29, max 8, interior max 1;
    # x1/8 mean 0.33, max 7, interior max 1.  Differences are borders/rounding.
    img = _smooth_image()
    out = imresize(img, 1 / s)
    pil = np.asarray(Image.fromarray(img).resize((160 // s,) * 2, Image.BICUBIC))
    diff = np.abs(out.astype(int) - pil.astype(int))
    assert diff[2:-2, 2:-2].max() <= 1
    assert diff.mean() < 0.5


def test_agrees_with_pil_bicubic_upscale():
    img = imresize(_smooth_image(), 1 / 4)
    out = imresize(img, 4)
    assert out.shape == (160, 160, 3)
    pil = np.asarray(Image.fromarray(img).resize((160, 160), Image.BICUBIC))
    assert np.abs(out.astype(int) - pil.astype(int)).max() <= 2


def test_far_from_plain_cv2_inter_cubic():
    # Sanity: a non-antialiased a=-0.75 resize is a genuinely different kernel.
    import cv2

    img = _smooth_image()
    ours = imresize(img, 1 / 4).astype(int)
    cv = cv2.resize(img, (40, 40), interpolation=cv2.INTER_CUBIC).astype(int)
    assert np.abs(ours - cv).mean() > 5.0  # measured 10.6
