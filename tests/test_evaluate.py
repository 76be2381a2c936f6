"""Tests for flow.evaluate: NTIRE naming, CSV/JSON columns, --sr-dir scoring with
known values, errors on mismatched inputs, and a fast end-to-end model sweep."""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_model
from flow import evaluate as ev
from flow import load_model, save_safetensors
from flow.data import heldout_images, make_lr, to_tensor
from flow.ops.metrics import ntire_lr_psnr
from flow.sr import to_uint8

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_alexnet(tmp_path, monkeypatch):
    """LPIPS must be unavailable (no AlexNet weights under this TORCH_HOME)."""
    import torch

    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def _read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]


def _gt_images(folder: Path, sizes=((66, 62), (64, 72)), names=("a.png", "b.png")):
    folder.mkdir(parents=True, exist_ok=True)
    src = heldout_images(["astronaut"], crop=None)["astronaut"]
    out = []
    for (h, w), n, off in zip(sizes, names, (0, 150)):
        im = np.ascontiguousarray(src[100 + off:100 + off + h, 180:180 + w])
        Image.fromarray(im).save(folder / n)
        out.append(im)
    return out


def test_ntire_names():
    assert ev.ntire_name(3, 7, 10) == "000003_sample00007.png"
    assert ev.ntire_name(12, 0, 1) == "000012.png"
    assert ev.temp_dirname(0.8) == "t0.8" and ev.temp_dirname(1.0) == "t1" and ev.temp_dirname(0) == "t0"


def test_json_inf_encoding():
    obj = {"a": float("inf"), "b": [float("-inf"), float("nan"), 1.5], "c": np.float64(2.0)}
    s = json.dumps(ev.json_safe(obj), allow_nan=False)
    assert json.loads(s) == {"a": "inf", "b": ["-inf", None, 1.5], "c": 2.0}
    assert ev.json_load_value("inf") == float("inf")


def test_image_metrics_match_metric_module():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    samples = [np.clip(gt.astype(int) + rng.integers(-9, 10, gt.shape), 0, 255).astype(np.uint8)
               for _ in range(3)]
    lr = make_lr(gt, 4)
    m, rows = ev.image_metrics(samples, gt, lr, 4, 4)
    mean, worst = ntire_lr_psnr(samples, gt, 4)
    assert m["lr_psnr_mean"] == pytest.approx(mean, abs=1e-12)
    assert m["lr_psnr_worst"] == pytest.approx(worst, abs=1e-12)
    assert m["lr_psnr_given"] == pytest.approx(mean, abs=1e-12)   # given LR = D(gt) here
    assert m["psnr_rgb_best"] == max(r["psnr_rgb"] for r in rows)
    assert ev.best_of_n([[1.0, 3.0, 2.0], [5.0, 4.0, 6.0]]) == [3.0, 4.0, 4.5]


def _known_sr_case(tmp_path):
    """Two 64x64 GT images; SR samples differ from the GT at known pixels."""
    rng = np.random.default_rng(1)
    gt_dir, sr_dir = tmp_path / "gt", tmp_path / "sr"
    gt_dir.mkdir()
    sr_dir.mkdir()
    gts = []
    for i in range(2):
        g = rng.integers(0, 200, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(g).save(gt_dir / f"img{i}.png")
        gts.append(g)
    # image 0: sample 0 has one channel of one pixel +16, sample 1 has four such pixels
    s0 = gts[0].copy()
    s0[5, 7, 0] += 16
    s1 = gts[0].copy()
    for y, x in ((1, 1), (2, 30), (40, 3), (60, 60)):
        s1[y, x, 1] += 16
    # image 1: sample 0 all +2, sample 1 all +4 (uniform offsets)
    t0, t1 = gts[1] + 2, gts[1] + 4
    for i, (a, b) in enumerate(((s0, s1), (t0, t1))):
        Image.fromarray(a).save(sr_dir / f"{i:06d}_sample00000.png")
        Image.fromarray(b).save(sr_dir / f"{i:06d}_sample00001.png")
    n = 64 * 64 * 3
    p = lambda mse: 10 * math.log10(255 ** 2 / mse)  # noqa: E731
    expected_psnr = [(p(256 / n) + p(4 * 256 / n)) / 2, (p(4.0) + p(16.0)) / 2]
    expected_best = [p(256 / n), p(4.0)]
    # pixel std across 2 samples: |a-b|/2 per element
    expected_std = [(16 / 2 * 5) / n, 1.0]
    return gt_dir, sr_dir, expected_psnr, expected_best, expected_std


def test_sr_dir_scores_known_values(tmp_path):
    gt_dir, sr_dir, e_psnr, e_best, e_std = _known_sr_case(tmp_path)
    out = tmp_path / "out"
    assert ev.main(["--sr-dir", str(sr_dir), "--gt-dir", str(gt_dir), "--scale", "4", "--out", str(out),
                    "--quiet"]) == 0
    cols, rows = _read_csv(out / "per_image.csv")
    assert cols == ev.columns(4)
    assert [r["gt_name"] for r in rows] == ["img0.png", "img1.png"]
    for r, ep, eb, es in zip(rows, e_psnr, e_best, e_std):
        assert float(r["psnr_rgb"]) == pytest.approx(ep, abs=1e-5)
        assert float(r["psnr_rgb_best"]) == pytest.approx(eb, abs=1e-5)
        assert float(r["pixel_std"]) == pytest.approx(es, abs=1e-5)
        assert r["samples"] == "2" and r["lpips_mean"] == "" and r["nll_bpd"] == ""
    summ = json.loads((out / "summary.json").read_text())
    assert summ["psnr_rgb"] == pytest.approx(np.mean(e_psnr), abs=1e-9)
    assert summ["best_of_n_psnr"][-1] == pytest.approx(np.mean(e_best), abs=1e-9)
    assert summ["temperature"] is None and summ["mode"] == "sr-dir"
    assert summ["lpips_mean"] is None and summ["ntire_diversity"] is None
    assert "AlexNet" in summ["lpips_unavailable_reason"]
    for k in ev.metric_keys(4):
        assert k in summ
    scols, srows = _read_csv(out / "per_sample.csv")
    assert scols == ev.SAMPLE_COLUMNS and len(srows) == 4
    res = json.loads((out / "results.json").read_text())
    assert len(res["runs"]) == 1 and "inf" in res["inf_encoding"]
    assert (out / "plots" / "perception_distortion.png").is_file()
    assert (out / "plots" / "best_of_n.png").is_file()


def test_sr_dir_single_sample_and_infinity(tmp_path):
    """SR == GT: PSNR and LR-PSNR are +inf, written as "inf" in JSON and CSV."""
    rng = np.random.default_rng(2)
    gt_dir, sr_dir = tmp_path / "gt", tmp_path / "sr"
    gt_dir.mkdir()
    sr_dir.mkdir()
    g = rng.integers(0, 256, (35, 43, 3), dtype=np.uint8)       # cropped to 32 x 40
    Image.fromarray(g).save(gt_dir / "x.png")
    Image.fromarray(g).save(sr_dir / "000000.png")              # larger than the crop: cropped
    out = tmp_path / "out"
    ev.main(["--sr-dir", str(sr_dir), "--gt-dir", str(gt_dir), "--scale", "4", "--out", str(out), "--quiet"])
    summ = json.loads((out / "summary.json").read_text())
    assert summ["psnr_rgb"] == "inf" and summ["lr_psnr_mean"] == "inf" and summ["lr_psnr_worst"] == "inf"
    assert summ["inf_counts"]["lr_psnr_mean"] == 1
    assert summ["ssim_rgb"] == pytest.approx(1.0)
    assert summ["pixel_std"] == 0.0 and summ["mse_diversity"] == 0.0
    _, rows = _read_csv(out / "per_image.csv")
    assert rows[0]["psnr_rgb"] == "inf" and rows[0]["samples"] == "1"


def _expect_error(args, msg):
    with pytest.raises(SystemExit) as e:
        ev.main(args + ["--quiet", "--no-plots"])
    assert isinstance(e.value.code, str) and msg in e.value.code, e.value.code


def test_input_errors(tmp_path):
    gt_dir, sr_dir, *_ = _known_sr_case(tmp_path)
    base = ["--gt-dir", str(gt_dir), "--scale", "4", "--out", str(tmp_path / "o")]
    _expect_error(["--sr-dir", str(sr_dir), "--gt-dir", str(gt_dir), "--out", str(tmp_path / "o")],
                  "needs --scale")
    # extra index without GT
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(sr_dir / "000002_sample00000.png")
    _expect_error(["--sr-dir", str(sr_dir)] + base, "without a GT")
    (sr_dir / "000002_sample00000.png").unlink()
    # file outside the NTIRE layout
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(sr_dir / "foo.png")
    _expect_error(["--sr-dir", str(sr_dir)] + base, "not in the NTIRE layout")
    (sr_dir / "foo.png").unlink()
    # unequal sample counts
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(sr_dir / "000001_sample00002.png")
    _expect_error(["--sr-dir", str(sr_dir)] + base, "different numbers of SR samples")
    (sr_dir / "000001_sample00002.png").unlink()
    # SR smaller than the GT
    Image.fromarray(np.zeros((60, 64, 3), np.uint8)).save(sr_dir / "000001_sample00001.png")
    _expect_error(["--sr-dir", str(sr_dir)] + base, "size mismatch")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(sr_dir / "000001_sample00001.png")
    # LR names / sizes
    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(lr_dir / "img0x4.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(lr_dir / "other.png")
    _expect_error(["--sr-dir", str(sr_dir), "--lr-dir", str(lr_dir)] + base, "no LR for GT: img1.png")
    Image.fromarray(np.zeros((15, 16, 3), np.uint8)).save(lr_dir / "img1.png")
    (lr_dir / "other.png").unlink()
    _expect_error(["--sr-dir", str(sr_dir), "--lr-dir", str(lr_dir)] + base, "size mismatch for img1.png")
    # empty and unreadable
    (tmp_path / "empty").mkdir()
    _expect_error(["--sr-dir", str(sr_dir), "--gt-dir", str(tmp_path / "empty"), "--scale", "4",
                   "--out", str(tmp_path / "o")], "contains no images")
    (gt_dir / "img1.png").write_bytes(b"garbage")
    _expect_error(["--sr-dir", str(sr_dir)] + base, "cannot read image")


def test_error_exit_code_cli(tmp_path):
    (tmp_path / "gt").mkdir()
    r = subprocess.run([sys.executable, "-m", "flow.evaluate", "--sr-dir", str(tmp_path), "--gt-dir",
                        str(tmp_path / "gt"), "--scale", "4", "--out", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "contains no images" in r.stderr


def test_model_sweep_end_to_end(tmp_path):
    model = make_model("tiny_4x")
    mpath = tmp_path / "tiny.safetensors"
    save_safetensors(model, mpath)
    gts = _gt_images(tmp_path / "gt")
    out = tmp_path / "out"
    assert ev.main(["--model", str(mpath), "--gt-dir", str(tmp_path / "gt"), "--out", str(out),
                    "--temperatures", "0,0.8", "--samples", "2", "--seed", "3", "--quiet"]) == 0
    for t in ("t0", "t0.8"):
        files = sorted(p.name for p in (out / t).iterdir() if p.suffix == ".png")
        assert files == ["000000_sample00000.png", "000000_sample00001.png",
                         "000001_sample00000.png", "000001_sample00001.png"]
        cols, rows = _read_csv(out / t / "per_image.csv")
        assert cols == ev.columns(4) and len(rows) == 2
        summ = json.loads((out / t / "summary.json").read_text())
        for k in ev.metric_keys(4):
            assert k in summ
        assert summ["lpips_mean"] is None and summ["lpips_unavailable_reason"]
        assert math.isfinite(summ["nll_bpd"]) and summ["nll_official_bpp"] > 0
        assert summ["sec_per_sample"] > 0 and summ["peak_rss_mb"] > 0
        assert len(summ["best_of_n_psnr"]) == 2
        assert summ["psnr_y_shave4"] is not None
    s0 = json.loads((out / "t0" / "summary.json").read_text())
    s8 = json.loads((out / "t0.8" / "summary.json").read_text())
    assert s0["pixel_std"] == 0.0 and s8["pixel_std"] > 0
    assert s0["nll_bpd"] == s8["nll_bpd"]
    # GT cropped to multiples of 8: 66x62 -> 64x56; SR images have that size
    sr0 = np.asarray(Image.open(out / "t0.8" / "000000_sample00001.png"))
    assert sr0.shape == (64, 56, 3)
    # reproducible: sample k == model.sample with seed + k on the bicubic LR
    lr = make_lr(np.ascontiguousarray(gts[0][:64, :56]), 4)
    m2 = load_model(mpath, device="cpu")
    ref = m2.sample(to_tensor(lr)[None], temperature=0.8, seed=3, n=2)
    assert np.array_equal(sr0, to_uint8(ref[1]))
    # results table and plots
    cols, rows = _read_csv(out / "results.csv")
    assert [r["label"] for r in rows] == ["t0", "t0.8"] and "lr_psnr_given" in cols
    with pytest.raises(SystemExit, match="--overwrite"):      # never mixes runs silently
        ev.main(["--model", str(mpath), "--gt-dir", str(tmp_path / "gt"), "--out", str(out), "--quiet"])
    for p in ("psnr_vs_temperature", "lr_psnr_vs_temperature", "diversity_vs_temperature",
              "lpips_vs_temperature", "perception_distortion", "best_of_n"):
        assert (out / "plots" / f"{p}.png").stat().st_size > 1000
    # the sweep's own folder scores identically with --sr-dir
    out2 = tmp_path / "rescored"
    ev.main(["--sr-dir", str(out / "t0.8"), "--gt-dir", str(tmp_path / "gt"), "--scale", "4",
             "--out", str(out2), "--quiet", "--no-plots"])
    a = json.loads((out2 / "summary.json").read_text())
    for k in ("psnr_rgb", "ssim_rgb", "lr_psnr_mean", "lr_psnr_worst", "lr_psnr_given", "mse_diversity",
              "pixel_std"):
        assert a[k] == pytest.approx(s8[k], abs=1e-9), k


def test_model_with_given_lr_and_fake_lpips(tmp_path, monkeypatch):
    """Given LR folder (DIV2K-style names), and the LPIPS code path with a stand-in
    metric (the real one needs AlexNet weights that are not available offline)."""
    import flow.ops.metrics as fm

    class FakeLpips:
        available = True
        reason = "fake"

        def __init__(self, device="cpu", batch=4):
            pass

        def spatial_maps(self, samples, gt):
            return fm.mse_maps(samples, gt)[:, :gt.shape[0], :gt.shape[1]]

    monkeypatch.setattr(fm, "LpipsMetric", FakeLpips)
    model = make_model("tiny_4x")
    mpath = tmp_path / "tiny.safetensors"
    save_safetensors(model, mpath)
    gts = _gt_images(tmp_path / "gt", sizes=((64, 56), (48, 40)))
    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    for n, g in zip(("a", "b"), gts):
        Image.fromarray(make_lr(g, 4)).save(lr_dir / f"{n}x4.png")
    out = tmp_path / "out"
    ev.main(["--model", str(mpath), "--gt-dir", str(tmp_path / "gt"), "--lr-dir", str(lr_dir),
             "--out", str(out), "--temperatures", "0.9", "--samples", "1", "--quiet", "--no-plots"])
    assert sorted(p.name for p in (out / "t0.9").glob("*.png")) == ["000000.png", "000001.png"]
    summ = json.loads((out / "t0.9" / "summary.json").read_text())
    assert summ["lpips_unavailable_reason"] is None
    assert summ["lpips_mean"] > 0 and summ["ntire_diversity"] == pytest.approx(0.0, abs=1e-9)  # one sample


def test_model_sweep_tiled(tmp_path):
    """--tile: images larger than the tile are super-resolved tile by tile (NLL is
    then skipped and the summary says why)."""
    model = make_model("tiny_4x")
    mpath = tmp_path / "tiny.safetensors"
    save_safetensors(model, mpath)
    _gt_images(tmp_path / "gt")
    out = tmp_path / "out"
    ev.main(["--model", str(mpath), "--gt-dir", str(tmp_path / "gt"), "--out", str(out), "--temperatures",
             "0.8", "--samples", "2", "--tile", "8", "--overlap", "2", "--margin", "4", "--quiet", "--no-plots"])
    summ = json.loads((out / "t0.8" / "summary.json").read_text())
    assert summ["nll_bpd"] is None and "tile" in summ["nll_note"]
    assert summ["psnr_rgb"] > 0 and summ["pixel_std"] > 0
    assert len(list((out / "t0.8").glob("*.png"))) == 4
    with pytest.raises(SystemExit):
        ev.main(["--model", str(mpath), "--gt-dir", str(tmp_path / "gt"), "--out", str(out),
                 "--tile", "8", "--overlap", "6", "--quiet"])
