"""Folded inference parameters of a coupling network, cached until a weight changes.

At inference (no autograd, eval mode) every ActNorm of a ``srflow``/``da`` coupling
network can be folded into the conv before it: ``(conv(x, w) + b) * e`` is
``conv(x, w * e) + b * e`` with ``e = exp(logs)``.  The zero conv's output scale
``exp(3 logs)`` folds the same way.  :func:`fold` builds those parameters once per
network and key and keeps them while no parameter of the network has changed: the
cache entry is stamped with every parameter's ``(data_ptr, _version)``, so an in-place
update (an optimiser step, ``load_state_dict``, ``copy_``) or a moved/reallocated
tensor rebuilds it on the next call.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def fold(net, head_in: slice | None, odd_offset: float = 0.0) -> dict | None:
    """Inference-only parameters of the coupling network ``net`` (a
    :class:`flow.layers.invertible.SubNet` of the ``srflow``/``da`` styles; None for
    the others) with the ActNorms folded into the convs.

    ``head`` (when ``head_in`` is given): (weight[:, head_in], bias, pad) of the first
    conv with its ActNorm folded in, and ``scale``: the ActNorm's exp(logs) (None
    without ActNorm), so that ``conv(x, weight, bias) + h0 * scale`` is the ActNorm'd
    first conv of ``[x, cond]`` given the linear conditioning share ``h0``;
    ``bias``: the first conv's bias (no ActNorm) or None; ``norm``: (bias, exp(logs))
    of the first ActNorm, or None; ``body``: (weight, bias, pad) per hidden conv,
    each followed by ReLU (see :func:`rest_folded`); ``tail``: (weight, bias) of the
    zero conv with ``exp(3 logs)`` folded in and ``odd_offset`` added to the bias of
    the odd output channels.
    """
    if net.style not in ("srflow", "da"):
        return None
    convs = [m for m in net.body if not isinstance(m, nn.ReLU)]
    params = [p for m in [net.head, *convs, net.tail] for p in m.parameters()]
    key = (None, None, odd_offset) if head_in is None else (head_in.start, head_in.stop, odd_offset)
    stamp = key + tuple((p.data_ptr(), p._version) for p in params)
    store = net.__dict__.setdefault("_folded", {})
    hit = store.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    with torch.no_grad():
        def fold_conv(conv, w):
            if conv.actnorm is None:
                return w.contiguous(), conv.bias.detach(), None
            e = torch.exp(conv.actnorm.logs.detach()).reshape(-1)
            return (w * e.view(-1, 1, 1, 1)).contiguous(), conv.actnorm.bias.detach().reshape(-1) * e, e

        head = net.head
        f = {"head": None, "scale": None, "norm": None,
             "bias": None if head.bias is None else head.bias.detach().view(1, -1, 1, 1)}
        if head_in is not None:
            hw, hb, he = fold_conv(head, head.weight.detach()[:, head_in])
            f["head"] = (hw, hb, head.pad)
            f["scale"] = None if he is None else he.view(1, -1, 1, 1)
        if head.actnorm is not None:
            f["norm"] = (head.actnorm.bias.detach(), torch.exp(head.actnorm.logs.detach()))
        f["body"] = [fold_conv(m, m.weight.detach())[:2] + (m.pad,) for m in convs]
        t = net.tail
        sc = torch.exp(3.0 * t.logs.detach()).reshape(-1)
        tb = t.bias.detach() * sc
        tb[1::2] += odd_offset
        f["tail"] = ((t.weight.detach() * sc.view(-1, 1, 1, 1)).contiguous(), tb)
    store[key] = (stamp, f)
    return f


def rest_folded(h: torch.Tensor, f: dict) -> torch.Tensor:
    """``SubNet.rest`` after the first ActNorm + ReLU (already applied to ``h``), with
    folded parameters ``f`` (see :func:`fold`); inference only."""
    for w, b, pad in f["body"]:
        h = F.conv2d(h, w, b, padding=pad).relu_()
    w, b = f["tail"]
    return F.conv2d(h, w, b, padding=1)
