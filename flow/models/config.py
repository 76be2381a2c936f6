"""Model configuration as dataclasses, presets, and the official-YAML reader.

A :class:`ModelConfig` fully determines an architecture (and therefore the
state-dict keys and shapes).  It serialises to a plain dict, which our
safetensors files store so that a model file is self-describing.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Coupling sub-network styles.  ``srflow``: conv3x3+actnorm, ReLU, conv1x1+actnorm,
#: ReLU, zero-conv (the official SRFlow).  ``da``: a plain stack of 3x3 convs with
#: bias and no actnorm (SRFlow-DA); ``da-r`` adds a residual around the hidden
#: stack; ``da-d`` is a deep stack of residual two-conv blocks.
COUPLINGS = ("srflow", "da", "da-r", "da-d")
#: Where Split layers go.  ``official``: after level l only if l < L-1 (the
#: official off-by-one); ``every_level``: l < L (SRFlow-DA); ``every6``: inside the
#: single level after conditional steps 0, 6, 12, ... (SRFlow-DA-S); ``none``.
SPLIT_RULES = ("official", "every_level", "every6", "none")


#: RRDB tail semantics (``flow.models.rrdb.RRDBNet``): ``official`` is the official SRFlow code
#: (residual from the last trunk block, conditioning maps after the LeakyReLU); ``esrgan``
#: is the ESRGAN form (residual from ``conv_first``, maps before the LeakyReLU), used by
#: ESRGAN/Real-ESRGAN weights and by our model files written before the field existed.
RRDB_TAILS = ("official", "esrgan")


@dataclass
class RRDBConfig:
    """The RRDB encoder (ESRGAN generator trunk); ``tail``: one of :data:`RRDB_TAILS`."""

    nf: int = 64
    nb: int = 23
    gc: int = 32
    in_nc: int = 3
    out_nc: int = 3
    tail: str = "official"


@dataclass
class FlowConfig:
    """The conditional flow (the 'FlowUpsamplerNet')."""

    K: int = 16
    L: int = 3
    n_transition: int = 2              # unconditional ActNorm+1x1 steps after each squeeze
    coupling: str = "srflow"
    hidden_channels: int = 64
    n_hidden_layers: int = 1           # srflow: 1 (a 1x1 conv); da: 4; da-d: 36
    kernel_hidden: int = 1             # srflow: 1; da*: 3
    eps: float = 1e-4                  # added to sigmoid(h + 2) scales
    split: str = "official"
    squeeze: str = "per_level"         # or "once": a single squeeze by the whole scale
    lu: bool = False                   # LU-decomposed 1x1 convs (new models only)
    blocks: list[int] = field(default_factory=lambda: [1, 8, 15, 22])  # stackRRDB.blocks


@dataclass
class ModelConfig:
    name: str = "custom"
    scale: int = 4
    rrdb: RRDBConfig = field(default_factory=RRDBConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)

    # -- serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Build from a plain dict; an unknown key (e.g. a misspelling) raises ``ValueError``
        naming it, so a typo can never silently train or load a different model."""
        if not isinstance(d, dict):
            raise ValueError(f"model config must be a mapping, got {type(d).__name__}")
        if "scale" not in d:
            raise ValueError("model config needs 'scale'")
        _refuse_unknown(d, {"name", "scale", "rrdb", "flow", "family"}, "model")
        if d.get("family", "srflow") != "srflow":
            raise ValueError(f"not an SRFlow config (family {d.get('family')!r})")
        parts = {}
        for key, klass in (("rrdb", RRDBConfig), ("flow", FlowConfig)):
            sub = d.get(key) or {}
            if not isinstance(sub, dict):
                raise ValueError(f"model config '{key}' must be a mapping")
            _refuse_unknown(sub, {f.name for f in dataclasses.fields(klass)}, f"model.{key}")
            parts[key] = klass(**{k: (list(v) if isinstance(v, tuple) else v) for k, v in sub.items()})
        return cls(name=d.get("name", "custom"), scale=int(d["scale"]), **parts)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def validate(self) -> "ModelConfig":
        f = self.flow
        if self.rrdb.tail not in RRDB_TAILS:
            raise ValueError(f"rrdb.tail must be one of {RRDB_TAILS}, got {self.rrdb.tail!r}")
        if self.scale not in (2, 4, 8, 16):
            raise ValueError(f"scale must be 2, 4, 8 or 16, got {self.scale}")
        if f.coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, got {f.coupling!r}")
        if f.split not in SPLIT_RULES:
            raise ValueError(f"split must be one of {SPLIT_RULES}, got {f.split!r}")
        if f.squeeze not in ("per_level", "once"):
            raise ValueError(f"squeeze must be 'per_level' or 'once', got {f.squeeze!r}")
        if f.squeeze == "once" and f.L != 1:
            raise ValueError("squeeze='once' needs L=1")
        if f.K < 1 or f.L < 1:
            raise ValueError("K and L must be >= 1")
        if any(b < 0 or b >= self.rrdb.nb for b in f.blocks):
            raise ValueError(f"stackRRDB blocks {f.blocks} out of range for nb={self.rrdb.nb}")
        if f.squeeze == "per_level" and 2 ** f.L > 2 * self.scale:
            raise ValueError(f"L={f.L} too deep for scale {self.scale} (needs HR/2^L >= LR/2)")
        return self

    @property
    def cond_channels(self) -> int:
        return self.rrdb.nf * (len(self.flow.blocks) + 1)


def _refuse_unknown(d: dict, known: set[str], where: str) -> None:
    extra = sorted(set(d) - known)
    if extra:
        raise ValueError(f"unknown {where} config key(s) {extra}; known: {sorted(known)}")


# ----------------------------------------------------------------------------
# presets
# ----------------------------------------------------------------------------

def _srflow(name, scale, nb, L, blocks) -> ModelConfig:
    return ModelConfig(name=name, scale=scale, rrdb=RRDBConfig(nb=nb),
                       flow=FlowConfig(K=16, L=L, blocks=list(blocks)))


def _da(name, scale, variant, K, L) -> ModelConfig:
    coupling = {"SRFlow-DA": "da", "SRFlow-DA-R": "da-r", "SRFlow-DA-S": "da",
                "SRFlow-DA-D": "da-d"}[variant]
    return ModelConfig(
        name=name, scale=scale, rrdb=RRDBConfig(nb=23),
        flow=FlowConfig(K=K, L=L, coupling=coupling, kernel_hidden=3,
                        n_hidden_layers=36 if variant == "SRFlow-DA-D" else 4,
                        split="every6" if variant == "SRFlow-DA-S" else "every_level",
                        squeeze="once" if variant == "SRFlow-DA-S" else "per_level",
                        blocks=[1, 8, 15, 22]))


# (K, L) of the SRFlow-DA family per scale, from the SRFlow-DA paper/configs.
_DA_KL = {
    ("SRFlow-DA", 4): (6, 2), ("SRFlow-DA", 8): (6, 3),
    ("SRFlow-DA-R", 4): (6, 2), ("SRFlow-DA-R", 8): (6, 3),
    ("SRFlow-DA-S", 4): (12, 1), ("SRFlow-DA-S", 8): (18, 1),
    ("SRFlow-DA-D", 4): (1, 2), ("SRFlow-DA-D", 8): (1, 3),
}


def _build_presets() -> dict[str, ModelConfig]:
    p = {
        "srflow_df2k_4x": _srflow("srflow_df2k_4x", 4, 23, 3, [1, 8, 15, 22]),
        "srflow_df2k_8x": _srflow("srflow_df2k_8x", 8, 23, 4, [1, 3, 5, 7]),
        "srflow_celeba_8x": _srflow("srflow_celeba_8x", 8, 8, 4, [1, 3, 5, 7]),
    }
    for (variant, scale), (K, L) in _DA_KL.items():
        key = variant.lower().replace("-", "_") + f"_df2k_{scale}x"
        p[key] = _da(key, scale, variant, K, L)
    # Small configurations: tests and the shipped model.
    p["tiny_4x"] = ModelConfig(
        name="tiny_4x", scale=4, rrdb=RRDBConfig(nf=16, nb=2, gc=8),
        flow=FlowConfig(K=2, L=3, hidden_channels=16, blocks=[0, 1]))
    p["tiny_8x"] = ModelConfig(
        name="tiny_8x", scale=8, rrdb=RRDBConfig(nf=16, nb=2, gc=8),
        flow=FlowConfig(K=2, L=4, hidden_channels=16, blocks=[0, 1]))
    p["small_4x"] = ModelConfig(
        name="small_4x", scale=4, rrdb=RRDBConfig(nf=32, nb=4, gc=16),
        flow=FlowConfig(K=4, L=3, hidden_channels=32, blocks=[0, 1, 2, 3]))
    # The shipped model: small enough for interactive use on a 2-core CPU; ESRGAN tail (the
    # tail its weights were made with).
    p["studio_4x"] = ModelConfig(
        name="studio_4x", scale=4, rrdb=RRDBConfig(nf=64, nb=6, gc=32, tail="esrgan"),
        flow=FlowConfig(K=4, L=3, hidden_channels=64, blocks=[1, 3, 5]))
    # An 8-block ESRGAN-tail RRDB (the shape of Real-ESRGAN weights imported with
    # `python -m flow.ncnn`, configs/studio_plus_4x.yaml) and the flow of studio_4x
    # (three conditioning blocks: 256-channel conditioning).
    p["studio_plus_4x"] = ModelConfig(
        name="studio_plus_4x", scale=4, rrdb=RRDBConfig(nf=64, nb=8, gc=32, tail="esrgan"),
        flow=FlowConfig(K=4, L=3, hidden_channels=64, blocks=[1, 4, 7], eps=0.02))
    return p


PRESETS: dict[str, ModelConfig] = _build_presets()


def preset(name: str) -> ModelConfig:
    """A fresh copy of a named preset (see ``PRESETS``)."""
    key = name.lower().replace("-", "_")
    if key not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return ModelConfig.from_dict(PRESETS[key].to_dict())


# ----------------------------------------------------------------------------
# official YAML
# ----------------------------------------------------------------------------

def _get(d, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def from_official_yaml(path_or_dict) -> ModelConfig:
    """Build the architecture described by an official SRFlow / SRFlow-DA YAML.

    Reads ``model``, ``scale``, ``network_G.{nf,nb,in_nc,out_nc}`` and
    ``network_G.flow.{K,L,additionalFlowNoAffine,split,stackRRDB,
    CondAffineSeparatedAndCond}``.  The SRFlow-DA variant is selected by ``model:``.
    """
    import yaml

    if isinstance(path_or_dict, dict):
        opt = path_or_dict
        src = "<dict>"
    else:
        src = str(path_or_dict)
        try:
            opt = yaml.safe_load(Path(path_or_dict).read_text())
        except yaml.YAMLError as e:
            raise ValueError(f"{src}: not a valid YAML file ({e})") from None
    if not isinstance(opt, dict) or "network_G" not in opt or "scale" not in opt:
        raise ValueError(f"{src}: not an SRFlow config (needs 'scale' and 'network_G')")
    model = str(opt.get("model", "SRFlow"))
    g = opt["network_G"]
    fl = g.get("flow") or {}
    scale = int(opt["scale"])
    if model not in ("SRFlow", "SRFlow-DA", "SRFlow-DA-R", "SRFlow-DA-S", "SRFlow-DA-D"):
        raise ValueError(f"{src}: unsupported model {model!r}")
    if str(fl.get("coupling", "CondAffineSeparatedAndCond")) != "CondAffineSeparatedAndCond":
        raise ValueError(f"{src}: unsupported coupling {fl.get('coupling')!r}")
    blocks = _get(fl, "stackRRDB", "blocks", default=[1, 8, 15, 22])
    if not _get(fl, "stackRRDB", "concat", default=True):
        raise ValueError(f"{src}: stackRRDB.concat=false is not supported")
    split_enable = bool(_get(fl, "split", "enable", default=False))
    correct = bool(_get(fl, "split", "correct_splits", default=False))
    hidden = _get(fl, "CondAffineSeparatedAndCond", "hidden_channels", default=None) or 64
    eps = _get(fl, "CondAffineSeparatedAndCond", "eps", default=None) or 1e-4
    rrdb = RRDBConfig(nf=int(g.get("nf", 64)), nb=int(g.get("nb", 23)), gc=int(g.get("gc", 32)),
                      in_nc=int(g.get("in_nc", 3)), out_nc=int(g.get("out_nc", 3)))
    K, L = int(fl.get("K", 16)), int(fl.get("L", 3))
    n_trans = int(fl.get("additionalFlowNoAffine", 0))
    name = Path(src).stem if src != "<dict>" else model
    if model == "SRFlow":
        flow = FlowConfig(K=K, L=L, n_transition=n_trans, hidden_channels=int(hidden), eps=float(eps),
                          split=("every_level" if correct else "official") if split_enable else "none",
                          blocks=list(blocks))
    else:
        cfg = _da(name, scale, model, K, L)
        flow = cfg.flow
        flow.n_transition = n_trans
        flow.hidden_channels = int(hidden)
        flow.eps = float(eps)
        flow.blocks = list(blocks)
        if not split_enable:
            flow.split = "none"
    if not fl.get("fea_up0", False) and flow.squeeze == "per_level" and 2 ** L > scale:
        raise ValueError(f"{src}: L={L} at scale {scale} needs fea_up0: true")
    return ModelConfig(name=name, scale=scale, rrdb=rrdb, flow=flow).validate()
