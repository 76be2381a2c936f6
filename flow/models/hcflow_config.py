"""HCFlow configurations: :class:`HCFlowConfig`, the presets (official architectures and
our small models) and the official-YAML reader."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class HCFlowConfig:
    """One HCFlow architecture.  ``kind``: ``sr`` or ``rescaling``."""

    name: str = "custom"
    kind: str = "sr"
    scale: int = 4
    L: int = 2
    K: int = 26                          # total steps per level (main + conditional)
    P: list[int] = field(default_factory=lambda: [13, 13])   # conditional steps per level
    hidden: int = 64                     # FCN hidden channels (SR main + all conditional steps)
    dense_growth: int = 32               # rescaling main-step DenseBlock growth
    rrdb_nb: list[int] = field(default_factory=lambda: [7, 7])
    rrdb_nf: int = 64
    rrdb_gc: int = 32
    quant: int = 64                      # dequantisation bins (top-level yml key ``quant``)
    family: str = "hcflow"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HCFlowConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - known
        if extra:
            raise ValueError(f"unknown HCFlow config keys: {sorted(extra)}")
        return cls(**{k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in d.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def validate(self) -> "HCFlowConfig":
        if self.kind not in ("sr", "rescaling"):
            raise ValueError(f"kind must be 'sr' or 'rescaling', got {self.kind!r}")
        if 2 ** self.L != self.scale:
            raise ValueError(f"HCFlow needs scale == 2**L (scale {self.scale}, L {self.L})")
        if len(self.P) != self.L or any(not 0 <= p <= self.K for p in self.P):
            raise ValueError(f"P must list 0..K conditional steps for each of the {self.L} levels: {self.P}")
        if len(self.rrdb_nb) != 2 or min(self.rrdb_nb) < 0:
            raise ValueError(f"rrdb_nb must be two block counts, got {self.rrdb_nb}")
        return self

    @property
    def cond_channels(self) -> int:
        return 2 * self.rrdb_nf if self.kind == "sr" else self.rrdb_nf


def _hc(name, kind, scale, L, K, P, nb, gc, quant, hidden=64, growth=32) -> HCFlowConfig:
    return HCFlowConfig(name=name, kind=kind, scale=scale, L=L, K=K, P=list(P), rrdb_nb=list(nb),
                        rrdb_gc=gc, quant=quant, hidden=hidden, dense_growth=growth).validate()


HC_PRESETS: dict[str, HCFlowConfig] = {
    "hcflow_sr_df2k_4x": _hc("hcflow_sr_df2k_4x", "sr", 4, 2, 26, [13, 13], [7, 7], 32, 64),
    "hcflow_sr_celeba_8x": _hc("hcflow_sr_celeba_8x", "sr", 8, 3, 26, [13, 13, 13], [5, 5], 32, 256),
    "hcflow_rescaling_df2k_4x": _hc("hcflow_rescaling_df2k_4x", "rescaling", 4, 2, 14, [6, 6], [2, 1], 16, 64),
    # small models trained by us (assets/) and test sizes
    "hcflow_studio_sr_4x": HCFlowConfig(name="hcflow_studio_sr_4x", kind="sr", scale=4, L=2, K=6, P=[3, 3],
                                        hidden=32, rrdb_nb=[1, 1], rrdb_nf=32, rrdb_gc=16, quant=64).validate(),
    "hcflow_studio_rescaling_4x": HCFlowConfig(name="hcflow_studio_rescaling_4x", kind="rescaling", scale=4,
                                               L=2, K=8, P=[3, 3], hidden=32, dense_growth=16, rrdb_nb=[1, 1],
                                               rrdb_nf=32, rrdb_gc=16, quant=64).validate(),
    "hcflow_tiny_sr_4x": _hc("hcflow_tiny_sr_4x", "sr", 4, 2, 3, [2, 2], [1, 1], 8, 64, hidden=16),
    "hcflow_tiny_sr_8x": _hc("hcflow_tiny_sr_8x", "sr", 8, 3, 3, [2, 1, 2], [1, 1], 8, 256, hidden=16),
    "hcflow_tiny_rescaling_4x": _hc("hcflow_tiny_rescaling_4x", "rescaling", 4, 2, 4, [2, 2], [1, 1], 8, 64,
                                    hidden=16, growth=8),
}


def hcflow_from_official_yaml(opt: dict) -> HCFlowConfig:
    """The :class:`HCFlowConfig` of an official HCFlow option dict (``train_*.yml``/
    ``test_*.yml`` parsed)."""
    g = opt.get("network_G") or {}
    which = g.get("which_model_G")
    if which not in ("HCFlowNet_SR", "HCFlowNet_Rescaling"):
        raise ValueError(f"not an HCFlow config (network_G.which_model_G = {which!r})")
    fd = g.get("flowDownsampler") or {}
    so = fd.get("splitOff") or g.get("splitOff") or {}
    kind = "sr" if which == "HCFlowNet_SR" else "rescaling"
    scale = int(opt.get("scale", 4))
    L = int(fd.get("L", round(math.log2(scale))))
    P = so.get("after_flowstep", [0] * L)
    if isinstance(P, int):
        P = [P] * L
    cfg = HCFlowConfig(
        name=f"hcflow_{kind}_{scale}x (yaml)", kind=kind, scale=scale, L=L, K=int(fd.get("K", 26)),
        P=[int(p) for p in P], hidden=int(so.get("hidden_channels", 64)),
        dense_growth=int(fd.get("hidden_channels", 32)) if kind == "rescaling" else 32,
        rrdb_nb=[int(b) for b in so.get("RRDB_nb", [7, 7])], rrdb_nf=int(so.get("RRDB_nf", 64)),
        rrdb_gc=int(so.get("RRDB_gc", 32)), quant=int(opt.get("quant", 256)))
    for p in HC_PRESETS.values():             # a recognised official architecture keeps its name
        if dataclasses.replace(p, name=cfg.name) == cfg:
            return dataclasses.replace(p)
    return cfg.validate()


def is_hcflow_yaml(opt) -> bool:
    g = opt.get("network_G") if isinstance(opt, dict) else None
    return isinstance(g, dict) and str(g.get("which_model_G", "")).startswith("HCFlowNet")
