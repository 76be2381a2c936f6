"""Neural-network layers: SRFlow's invertible layers and coupling networks
(:mod:`~flow.layers.invertible`, with folded inference parameters in
:mod:`~flow.layers.folded` and the Winograd kernel of the condition caches in
:mod:`~flow.layers.winograd`), HCFlow's layers (:mod:`~flow.layers.hcflow`) and the
RRDB blocks (:mod:`~flow.layers.rrdb`)."""
from .invertible import (ActNorm, CondAffine, CondCache, ConvNorm, FlowStep, InvConv1x1, Split, Squeeze, SubNet,
                         ZeroConv, gaussian_logp, squeeze2d, unsqueeze2d)
from .winograd import conv3x3_winograd, winograd_weight

__all__ = ["ActNorm", "CondAffine", "CondCache", "ConvNorm", "FlowStep", "InvConv1x1", "Split", "Squeeze", "SubNet",
           "ZeroConv", "gaussian_logp", "squeeze2d", "unsqueeze2d", "conv3x3_winograd", "winograd_weight"]
