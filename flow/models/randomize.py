"""Random weights for tests and benchmarks: the parts that start as the identity get
small random values, so that every layer of an untrained model really transforms its
input.  The one weight randomiser of the project (tests, benchmarks, fixtures)."""
from __future__ import annotations

import torch

from ..layers.hcflow import DenseNet5
from ..layers.invertible import ActNorm, ConvNorm, FlowStep, ZeroConv


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 1.0,
              weight_std: float = 1e-3, expand: float = 0.15) -> torch.nn.Module:
    """Give non-trivial weights to the parts that start as the identity (in place;
    returns ``model``).

    Zero-initialised convs (coupling/injector/split-prior/HCFlow-prior outputs and
    HCFlow's dense-block output convs; weights with std ``weight_std``) and every ActNorm
    get small random values; SRFlow's flow-step ActNorms expand slightly (``expand x scale``
    added to their log-scale), as trained ones do against the couplings' sigmoid(.+2) < 1
    contraction, so that float32 inversion stays accurate and random-weight decodes stay
    bounded (deep flows, e.g. the official DF2K architecture, need ``expand`` ~0.22 to
    keep tau = 0.8 decodes within a few units).  SRFlow-DA
    hidden convs get variance-preserving weights and random biases.  Invertible 1x1 convs
    (random orthogonal already; random matrices would be ill-conditioned), the RRDBs and
    SRFlow's coupling hidden convs keep their initialisation.  ``scale`` multiplies all
    the random values.  Every value comes from ``torch.Generator().manual_seed(seed)``
    (float64 draws, in module order).
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
                m.logs.add_(expand * scale)
            m.inited.fill_(True)
        elif isinstance(m, DenseNet5):
            rnd(m.conv5.weight, weight_std)
            rnd(m.conv5.bias, 0.01)
    return model
