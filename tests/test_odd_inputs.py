"""Every shipped SR model gives finite samples straight from ``model.sample`` on odd LRs.

The inputs: uniform and Gaussian noise, flat black/white/grey, a 1-px checkerboard, a hard
edge, saturated colour bars, a JPEG-q5 photo and a normal photo, each at tau in {0, 0.8, 1.0,
1.2}.  Diagnosis (see the model cards): on noise and checkerboard LRs the conditioning drives
the coupling scales ``sigmoid(h + 2) + eps`` to the floor ``eps = 1e-4``; every inverse step
then divides by it and the growth feeds back through the next coupling, to inf and NaN.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import flow
from flow.ops.imresize import imresize

ROOT = Path(__file__).resolve().parents[1]
TAUS = (0.0, 0.8, 1.0, 1.2)
# Models trained before the synthetic patterns existed; still non-finite on noise/checkerboards
# (strict: the test fails as soon as one of them becomes finite, so this list stays true).
KNOWN_FRAGILE = {"studio_4x", "hcflow_sr_4x"}


def odd_inputs(s: int = 24) -> dict[str, torch.Tensor]:
    import skimage.data

    g = torch.Generator().manual_seed(0)
    out = {"uniform": torch.rand(1, 3, s, s, generator=g),
           "gauss": (0.5 + 0.25 * torch.randn(1, 3, s, s, generator=g)).clamp(0, 1)}
    for name, v in (("black", 0.0), ("white", 1.0), ("grey", 0.5)):
        out[name] = torch.full((1, 3, s, s), v)
    out["checker"] = ((torch.arange(s)[:, None] + torch.arange(s)[None]) % 2).float().expand(1, 3, s, s).clone()
    edge = torch.zeros(1, 3, s, s)
    edge[..., s // 2:] = 1
    out["edge"] = edge
    bars = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 1, 1], [0, 0, 0]],
                        dtype=torch.float32)
    out["bars"] = bars[torch.arange(s) * 8 // s].T[:, None, :].expand(3, s, s)[None].clone()
    lr = imresize(skimage.data.astronaut()[100:100 + 4 * s, 150:150 + 4 * s], 0.25)
    out["photo"] = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    buf = io.BytesIO()
    Image.fromarray(lr).save(buf, "JPEG", quality=5)
    jpg = np.asarray(Image.open(buf).convert("RGB")).copy()
    out["jpeg_q5"] = torch.from_numpy(jpg).permute(2, 0, 1)[None].float() / 255
    return out


def _sr_models():
    for p in sorted((ROOT / "assets").glob("*.safetensors")):
        if "rescaling" in p.stem:
            continue
        marks = [pytest.mark.xfail(strict=True, reason="trained before data.synthetic; see its model card")] \
            if p.stem in KNOWN_FRAGILE else []
        yield pytest.param(p, id=p.stem, marks=marks)


@pytest.mark.parametrize("path", list(_sr_models()))
def test_finite_samples_on_odd_inputs(path):
    model = flow.load_model(path, device="cpu")
    bad = []
    with torch.no_grad():
        for name, lr in odd_inputs().items():
            cond = model.encode_condition(lr)
            for tau in TAUS:
                sr = model.sample(cond, temperature=tau, seed=0)
                if not torch.isfinite(sr).all():
                    bad.append(f"{name}@{tau}")
    assert not bad, f"{path.name}: non-finite samples on {len(bad)} of {len(TAUS) * 10} cases: {bad}"


def test_odd_inputs_are_what_they_say():
    x = odd_inputs()
    assert len(x) == 10 and all(t.shape == (1, 3, 24, 24) for t in x.values())
    assert x["checker"][0, 0, 0, :4].tolist() == [0, 1, 0, 1]
    assert float(x["uniform"].std()) > 0.25 and float(x["grey"].std()) == 0
    assert 0 < float((x["jpeg_q5"] - x["photo"]).abs().mean()) < 0.2
