"""Shared helpers and fixtures for the flow tests (kept small and generic)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flow import SRFlow, preset  # noqa: E402
from flow.layers import ActNorm, ConvNorm, FlowStep, ZeroConv  # noqa: E402

torch.set_num_threads(1)


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 1.0,
              weight_std: float = 1e-3) -> torch.nn.Module:
    """Give non-trivial weights to the parts that start as the identity.

    Zero-initialised convs (coupling/injector/split-prior outputs; weights with
    std ``weight_std``) and every ActNorm get small random values, so that every
    layer really transforms its input; the flow steps' ActNorms expand slightly, as
    trained ones do, so that float32 inversion stays accurate.  SRFlow-DA hidden
    convs get variance-preserving weights and random biases.  Invertible 1x1 convs
    are left alone (random orthogonal already; random matrices would be
    ill-conditioned), and so are the RRDB and the SRFlow coupling hidden convs.
    ``scale`` multiplies all the random values.
    """
    g = torch.Generator().manual_seed(seed)

    def rnd(t, std):
        t.copy_(torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype) * std * scale)

    flow_norms = {id(m.actnorm) for m in model.modules() if isinstance(m, FlowStep)}
    for m in model.modules():
        if isinstance(m, ZeroConv):
            rnd(m.weight, weight_std)
            rnd(m.bias, 0.1)
            rnd(m.logs, 0.05)
        elif isinstance(m, ConvNorm) and m.actnorm is None:
            # SRFlow-DA hidden convs (bias, no actnorm): variance-preserving weights
            # so that deep stacks (DA-D) do not blow up with random weights.
            fan_in = m.weight[0].numel()
            rnd(m.weight, 0.7 / fan_in ** 0.5)
            rnd(m.bias, 0.1)
        elif isinstance(m, ActNorm):
            rnd(m.bias, 0.1)
            rnd(m.logs, 0.05 if id(m) in flow_norms else 0.1)
            if id(m) in flow_norms:
                # expand a little, as trained flows do, to balance the couplings'
                # sigmoid(.+2) < 1 contraction (keeps float32 inversion accurate)
                m.logs.add_(0.15 * scale)
            m.inited.fill_(True)
    return model


def make_model(name: str, seed: int = 0, dtype=torch.float32) -> SRFlow:
    """A randomized eval-mode model of preset ``name`` (deterministic per seed)."""
    torch.manual_seed(seed)
    model = SRFlow(preset(name)).to(dtype)
    randomize(model, seed)
    return model.eval()


def rand_images(n, h, w, seed=0, dtype=torch.float32):
    """Smooth-ish images in [0, 1] (a random field plus low-frequency structure)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 3, h, w), generator=g, dtype=torch.float64)
    yy = torch.linspace(0, 1, h, dtype=torch.float64)[:, None]
    xx = torch.linspace(0, 1, w, dtype=torch.float64)[None, :]
    return (0.5 * x + 0.25 * (1 + torch.sin(6 * yy + 4 * xx))).clamp(0, 1).to(dtype)


@pytest.fixture
def tiny_model():
    """A randomized ``tiny_4x`` model (fresh per test)."""
    return make_model("tiny_4x", seed=0)


@pytest.fixture
def tiny_model_8x():
    return make_model("tiny_8x", seed=1)
