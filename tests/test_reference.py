"""Official equivalence: our SRFlow / SRFlow-DA against outputs recorded from the official code.

Each bundle in ``tests/data/reference/`` (see its README) holds an official-format state dict,
a small official-format YAML, an HR/LR pair and what the unmodified official code returned
for it: the float64 encode, the NLL in official bits per pixel, and the decodes of the encoded
latents, of fixed latents and of zero latents (tau = 0).  Errors are relative to
``max(1, |reference|)``, the tolerances are those of float32 arithmetic.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import flow
from flow import Latents

BUNDLES = Path(__file__).parent / "data" / "reference"
NAMES = sorted(p.name for p in BUNDLES.iterdir() if p.is_dir())


def _load(name: str, **cfg_overrides):
    d = BUNDLES / name
    cfg = flow.models.registry.resolve_config(str(d / "config.yml"))
    for k, v in cfg_overrides.items():
        setattr(cfg.rrdb, k, v)
    model = flow.load_model(d / "model.pth", config=cfg, device="cpu")
    inp, out = np.load(d / "inputs.npz"), np.load(d / "outputs.npz")
    return model, inp, out


def _keys(out, prefix):
    ks = [k for k in out.files if k.startswith(prefix) and k[len(prefix):].isdigit()]
    return sorted(ks, key=lambda k: int(k[len(prefix):]))


def _rel(a: torch.Tensor, ref: np.ndarray) -> float:
    return float(np.abs(a.double().numpy() - ref).max()) / max(1.0, float(np.abs(ref).max()))


def _errors(model, inp, out) -> dict[str, float]:
    lr = torch.from_numpy(inp["lr"]).float()
    hr = torch.from_numpy(inp["hr"]).float()
    err = {}
    with torch.no_grad():
        lat, _ = model.encode(hr, lr)
        eps = _keys(out, "epses_")
        assert [tuple(t.shape) for t in lat.levels] == [out[k].shape for k in eps]
        err["encode"] = max(_rel(t, out[k]) for t, k in zip(lat.levels, eps))
        err["decode_roundtrip"] = _rel(model.decode(lr, lat), out["sr_from_epses"])
        fixed = [torch.from_numpy(out[k]).float() for k in _keys(out, "fixed_")]
        err["decode_fixed"] = _rel(model.decode(lr, Latents(fixed, lat.strides, lat.hr_size)), out["sr_fixed"])
        zeros = [torch.zeros_like(t) for t in lat.levels]
        err["decode_tau0"] = _rel(model.decode(lr, Latents(zeros, lat.strides, lat.hr_size)), out["sr_tau0"])
        nll = model.nll(hr, lr, dequantize=False)
        official = float(out["nll"].ravel()[0])
        err["nll"] = abs(float(nll.official_bpp[0]) - official) / abs(official)
    return err


TOL = {"encode": 1e-4, "decode_roundtrip": 1e-4, "decode_fixed": 1e-3, "decode_tau0": 1e-4, "nll": 1e-5}


@pytest.mark.parametrize("name", NAMES)
def test_matches_official_outputs(name):
    model, inp, out = _load(name)
    assert model.cfg.rrdb.tail == "official"
    err = _errors(model, inp, out)
    bad = {k: v for k, v in err.items() if not v <= TOL[k]}
    assert not bad, f"{name}: relative errors over tolerance: {bad} (all: {err})"


def test_esrgan_tail_misses_the_official_outputs():
    """The check can fail: the ESRGAN tail (our pre-fix semantics) is far outside the
    tolerances on an official bundle, on the encode, the decodes and the NLL."""
    model, inp, out = _load("srflow_small_x8", tail="esrgan")
    err = _errors(model, inp, out)
    assert err["encode"] > 100 * TOL["encode"]
    assert err["decode_tau0"] > 100 * TOL["decode_tau0"]
    assert err["nll"] > 10 * TOL["nll"]


def test_bundle_lr_is_our_matlab_bicubic():
    from flow.ops.imresize import imresize

    for name in NAMES:
        inp = np.load(BUNDLES / name / "inputs.npz")
        ratio = inp["lr_uint8"].shape[0] / inp["hr_uint8"].shape[0]
        ours = np.asarray(imresize(inp["hr_uint8"], ratio))
        assert np.array_equal(ours, inp["lr_uint8"]), name


def test_earlier_import_paths_still_work():
    """User code and the spec's check script import ``flow.imresize``, ``flow.checkpoint`` etc.:
    those paths are the same module objects as their new homes."""
    import importlib

    pairs = {"imresize": "ops.imresize", "metrics": "ops.metrics", "checkpoint": "models.checkpoint",
             "config": "models.config", "model": "models.srflow", "hcflow": "models.hcflow", "rrdb": "models.rrdb"}
    for old, new in pairs.items():
        assert importlib.import_module(f"flow.{old}") is importlib.import_module(f"flow.{new}"), old
    from flow import imresize as imr
    inp = np.load(BUNDLES / "srflow_small_x8" / "inputs.npz")
    assert np.array_equal(np.asarray(imr.imresize(inp["hr_uint8"], 1 / 8)), inp["lr_uint8"])
