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
from flow.models.randomize import randomize  # noqa: E402,F401  (the project's one weight randomiser)

torch.set_num_threads(1)


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
