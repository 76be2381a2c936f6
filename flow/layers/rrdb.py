"""Residual-in-residual dense blocks (ESRGAN): the trunk of SRFlow's RRDB encoder and of
HCFlow's conditional feature extractors."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def lrelu(x):
    return F.leaky_relu(x, 0.2)


class DenseBlock(nn.Module):
    """Residual dense block: five 3x3 convs with dense connections, residual scale 0.2."""

    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, padding=1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, padding=1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, padding=1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, padding=1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, padding=1)

    def forward(self, x):
        feats = [x]
        if not torch.is_grad_enabled():      # inference: in-place activations, fused residual
            for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
                feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2, inplace=True))
            return torch.add(x, self.conv5(torch.cat(feats, 1)), alpha=0.2)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(lrelu(conv(torch.cat(feats, 1))))
        return x + 0.2 * self.conv5(torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual-in-residual dense block (three dense blocks, residual scale 0.2)."""

    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.RDB1 = DenseBlock(nf, gc)
        self.RDB2 = DenseBlock(nf, gc)
        self.RDB3 = DenseBlock(nf, gc)

    def forward(self, x):
        if not torch.is_grad_enabled():
            return torch.add(x, self.RDB3(self.RDB2(self.RDB1(x))), alpha=0.2)
        return x + 0.2 * self.RDB3(self.RDB2(self.RDB1(x)))
