"""The model families: family -> config class, model class, presets, official-YAML
reader and checkpoint conventions.  Every model is constructed here (:func:`build`),
and every config is resolved here (:func:`resolve_config`, :func:`config_from_dict`,
:func:`train_model_config`), for ``load_model``, the trainer and the app alike.

Adding a family: write its config and model modules (the model a
:class:`flow.models.protocol.FlowModel`), then add one :class:`Family` to
:data:`FAMILIES` below.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .config import PRESETS, ModelConfig, from_official_yaml
from .hcflow import HCFlow
from .hcflow_config import HC_PRESETS, HCFlowConfig, hcflow_from_official_yaml, is_hcflow_yaml
from .srflow import SRFlow


@dataclass(frozen=True)
class Family:
    """What the rest of the code needs to know about one model family."""

    name: str                                   # registry key; ``model.family``
    label: str                                  # for people ("SRFlow")
    config_class: type
    model_class: type
    presets: dict                               # name -> config
    #: config from a plain dict (our files and training configs); ``legacy``: the dict
    #: comes from a model file, which may predate some fields
    from_dict: Callable[[dict, bool], Any]
    #: an official YAML (parsed, and its path when read from a file) -> config
    read_yaml: Callable[[dict, str | None], Any]
    #: whether an official YAML (parsed) describes this family; None: the default family
    claims_yaml: Callable[[dict], bool] | None
    #: ``flow.models.checkpoint.normalize_official`` kinds of this family's .pth files
    checkpoint_kinds: tuple[str, ...]
    #: names of weights that must keep fixed values, given a loaded model (checked on load)
    bad_constants: Callable[[Any], list[str]] = field(default=lambda model: [])
    #: whether the family has a separately pre-trainable encoder (``encoder.*`` training keys)
    separate_encoder: bool = False


def _srflow_from_dict(d: dict, legacy: bool = False) -> ModelConfig:
    """SRFlow files written before ``RRDBConfig.tail`` existed were built with the ESRGAN
    tail, so in a model file a missing ``rrdb.tail`` reads as ``"esrgan"``."""
    if legacy and isinstance(d.get("rrdb"), dict) and "tail" not in d["rrdb"]:
        d = {**d, "rrdb": {**d["rrdb"], "tail": "esrgan"}}
    return ModelConfig.from_dict(d)


def _srflow_yaml(opt: dict, path: str | None) -> ModelConfig:
    return from_official_yaml(path if path is not None else opt)


def _bad_haar(model) -> list[str]:
    from ..layers.hcflow import haar_kernels

    return [name for name, p in model.state_dict().items()
            if name.endswith("haar_weights") and not p.cpu().equal(haar_kernels(p.shape[0] // 4))]


FAMILIES: dict[str, Family] = {
    "srflow": Family("srflow", "SRFlow", ModelConfig, SRFlow, PRESETS, _srflow_from_dict, _srflow_yaml,
                     None, ("full", "rrdb"), separate_encoder=True),
    "hcflow": Family("hcflow", "HCFlow", HCFlowConfig, HCFlow, HC_PRESETS,
                     lambda d, legacy=False: HCFlowConfig.from_dict(d),
                     lambda opt, path: hcflow_from_official_yaml(opt), is_hcflow_yaml, ("hcflow",),
                     bad_constants=_bad_haar),
}
#: the family of a dict or YAML that does not name one
DEFAULT_FAMILY = "srflow"


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_of(cfg) -> Family:
    """The family of a config object."""
    for f in FAMILIES.values():
        if isinstance(cfg, f.config_class):
            return f
    raise TypeError(f"not a model config: {type(cfg).__name__}")


def family_of_checkpoint(kind: str) -> Family:
    for f in FAMILIES.values():
        if kind in f.checkpoint_kinds:
            return f
    raise ValueError(f"no family reads {kind!r} checkpoints")


def build(cfg):
    """The model of a config (fresh weights): the one place where models are constructed."""
    return family_of(cfg).model_class(cfg)


# ----------------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------------

def _key(name: str) -> str:
    return str(name).lower().replace("-", "_")


def find_preset(name: str) -> Family | None:
    """The family that has a preset ``name`` (case and ``-``/``_`` insensitive), or None."""
    for f in FAMILIES.values():
        if _key(name) in f.presets:
            return f
    return None


def preset(name: str):
    """A fresh copy of the named preset of any family."""
    f = find_preset(name)
    if f is None:
        known = sorted(k for fam in FAMILIES.values() for k in fam.presets)
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(known)}")
    return f.from_dict(f.presets[_key(name)].to_dict(), False)


def config_from_dict(d: dict, legacy: bool = False):
    """A config from its plain dict (``d["family"]``, default SRFlow); ``legacy`` for
    dicts read from model files (see :attr:`Family.from_dict`)."""
    return family(d.get("family", DEFAULT_FAMILY)).from_dict(d, legacy)


def config_from_yaml(opt: dict, path: str | None = None):
    """The config of an official YAML (parsed; ``path`` when read from a file)."""
    for f in FAMILIES.values():
        if f.claims_yaml is not None and f.claims_yaml(opt):
            return f.read_yaml(opt, path)
    return FAMILIES[DEFAULT_FAMILY].read_yaml(opt, path)


def resolve_config(config):
    """A config object, a preset name, an official YAML path, or a parsed official YAML
    -> the config object."""
    if any(isinstance(config, f.config_class) for f in FAMILIES.values()):
        return config
    if isinstance(config, dict):
        return config_from_yaml(config)
    s = str(config)
    if not (s.endswith((".yml", ".yaml")) or os.path.exists(s)):
        return preset(s)
    import yaml

    try:
        opt = yaml.safe_load(Path(s).read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{s}: not a valid YAML file ({e})") from None
    if not isinstance(opt, dict):
        raise ValueError(f"{s}: not an SRFlow/HCFlow config")
    return config_from_yaml(opt, s)


def train_model_config(m):
    """The ``model:`` entry of a training config: a preset name, or a mapping with an
    optional ``preset`` whose other keys override the preset's (sub-mappings such as
    ``rrdb``/``flow`` merged key by key), or a full config mapping (``family`` names
    the family; default SRFlow)."""
    m = m or {}
    name = m if isinstance(m, str) else m.get("preset")
    if name is not None:
        fam = find_preset(name)
        if fam is None:
            preset(name)                                   # raises with the known names
        base = fam.presets[_key(name)].to_dict()
    else:
        fam = family(m.get("family", DEFAULT_FAMILY))
        base = {}
    for k, v in (m.items() if isinstance(m, dict) else []):
        if k == "preset":
            continue
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k].update(v)
        else:
            base[k] = v
    return fam.from_dict(base, False)
