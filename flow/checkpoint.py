"""Checkpoint import/export and the single entry point :func:`load_model`.

Supported files:

* official SRFlow / SRFlow-DA ``.pth`` (plain keys or ``module.``-prefixed, an
  optional ``state_dict``/``params`` wrapper); needs the official YAML (``config=``)
  or a preset name; the unused ``flowUpsamplerNet.f.0.*`` conv is dropped;
* RRDB-only ``.pth`` (``RRDB_*.pth``: encoder keys without the ``RRDB.`` prefix),
  loaded into the encoder of the given config;
* official HCFlow ``.pth`` (SR 4x/8x, rescaling 4x; keys ``flow.*``, older
  ``flowDownpsamplerNet``/``Split2d712`` names are renamed) with its YAML or a preset;
* our ``.safetensors`` files, which carry their config (SRFlow or HCFlow) as metadata.

Everything is read with ``torch.load(weights_only=True)`` or safetensors: no
arbitrary unpickling.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .config import ModelConfig, from_official_yaml, preset
from .hcflow import HC_PRESETS, HCFlow, HCFlowConfig, haar_kernels, hcflow_from_official_yaml, is_hcflow_yaml
from .model import SRFlow

FORMAT = "srflow-studio/1"
UNUSED_PREFIXES = ("flowUpsamplerNet.f.",)


class CheckpointError(ValueError):
    """A checkpoint does not fit the requested architecture (or is unreadable)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but CUDA is not available")
    return torch.device(device)


def _read_pth(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - surface a clear message for any unreadable file
        raise CheckpointError(f"{path}: cannot read as a PyTorch weights file ({type(e).__name__}: "
                              f"{(str(e).splitlines() or ['empty or truncated file'])[0][:200]})") from None
    for key in ("state_dict", "params", "params_ema", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: does not contain a state dict of tensors")
    return obj


def normalize_official(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Strip ``module.``, drop unused keys; returns (state dict, kind) with kind
    ``'full'`` (SRFlowNet) or ``'rrdb'`` (RRDB-only file, re-prefixed with ``RRDB.``)."""
    out = {}
    for k, v in sd.items():
        while k.startswith("module."):
            k = k[len("module."):]
        if k.startswith(UNUSED_PREFIXES) or "flowLRNet" in k or "quantization" in k:
            continue
        out[k] = v
    if any(k.startswith(("flow.", "flowDownpsamplerNet.")) for k in out):
        return {_hcflow_rename(k): v for k, v in out.items()}, "hcflow"
    if any(k.startswith("flowUpsamplerNet.") for k in out):
        return out, "full"
    if "conv_first.weight" in out:
        return {"RRDB." + k: v for k, v in out.items()}, "rrdb"
    if "RRDB.conv_first.weight" in out:
        return out, "rrdb"
    raise CheckpointError("not an SRFlow or RRDB checkpoint (no flowUpsamplerNet.* or conv_first.* keys)")


def _hcflow_rename(k: str) -> str:
    """Older HCFlow checkpoint names -> the current ones."""
    if k.startswith("flowDownpsamplerNet."):
        k = "flow." + k[len("flowDownpsamplerNet."):]
    k = k.replace("flow.Split2d712.", "flow.level0_condFlow.")
    if k.startswith("flow.layers.29.") and any(s in k for s in ("conv_first", "RRDB_trunk", "trunk_conv1",
                                                                  "additional_flow_steps", ".f.")):
        k = "flow.level1_condFlow." + k[len("flow.layers.29."):]
    return k


def check_haar(model, source: str) -> None:
    """The rescaling model's Haar kernels are constants: refuse a file that changed them."""
    for name, p in model.state_dict().items():
        if name.endswith("haar_weights") and not torch.equal(p.cpu(), haar_kernels(p.shape[0] // 4)):
            raise CheckpointError(f"{source}: {name} is not the constant Haar kernel")


def build_model(cfg):
    """The model of a config: :class:`SRFlow` or :class:`HCFlow`."""
    return HCFlow(cfg) if isinstance(cfg, HCFlowConfig) else SRFlow(cfg)


def check_state_dict(model: torch.nn.Module, sd: dict[str, torch.Tensor], subset: str | None = None,
                     source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` naming missing, unexpected and mis-shaped keys.
    With ``subset`` (a key prefix), only the model's keys under it are expected."""
    own = {k: v.shape for k, v in model.state_dict().items() if subset is None or k.startswith(subset)}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k])}"
                    for k in set(own) & set(sd) if tuple(sd[k].shape) != tuple(own[k]))
    if missing or unexpected or shapes:
        def fmt(name, items):
            if not items:
                return ""
            more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
            return f"\n  {name} ({len(items)}): " + ", ".join(items[:8]) + more
        cfg = getattr(model, "cfg", None)
        arch = f" for architecture {cfg.name!r}" if cfg is not None else ""
        raise CheckpointError(f"{source} does not match the model{arch}:" + fmt("missing keys", missing)
                              + fmt("unexpected keys", unexpected) + fmt("mis-shaped keys", shapes)
                              + "\n  (wrong --config / preset for this checkpoint?)")


def _config_from(config):
    if isinstance(config, (ModelConfig, HCFlowConfig)):
        return config
    if not isinstance(config, dict):
        s = str(config)
        if not (s.endswith((".yml", ".yaml")) or os.path.exists(s)):
            key = s.lower().replace("-", "_")
            if key in HC_PRESETS:
                return HCFlowConfig.from_dict(HC_PRESETS[key].to_dict())
            return preset(s)
        import yaml

        try:
            config = yaml.safe_load(Path(s).read_text())
        except yaml.YAMLError as e:
            raise ValueError(f"{s}: not a valid YAML file ({e})") from None
        if not isinstance(config, dict):
            raise ValueError(f"{s}: not an SRFlow/HCFlow config")
        if not is_hcflow_yaml(config):
            return from_official_yaml(s)
    return hcflow_from_official_yaml(config) if is_hcflow_yaml(config) else from_official_yaml(config)


def config_from_meta(meta: dict):
    """The config stored in one of our files.  SRFlow files written before
    ``RRDBConfig.tail`` existed were built with the ESRGAN tail, so a missing
    ``rrdb.tail`` reads as ``"esrgan"`` (new files always store it)."""
    d = json.loads(meta["config"])
    if d.get("family") == "hcflow":
        return HCFlowConfig.from_dict(d)
    if isinstance(d.get("rrdb"), dict) and "tail" not in d["rrdb"]:
        d["rrdb"] = {**d["rrdb"], "tail": "esrgan"}
    return ModelConfig.from_dict(d)


def save_safetensors(model: SRFlow, path: str | Path, extra: dict | None = None) -> None:
    """Write weights + config (+ optional string metadata) to a self-describing file."""
    from safetensors.torch import save_file

    meta = {"format": FORMAT, "config": model.cfg.to_json()}
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    save_file(sd, str(tmp), metadata=meta)
    os.replace(tmp, path)


def read_safetensors_meta(path: str | Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def load_model(path: str | Path, config=None, device: str | torch.device = "auto") -> SRFlow | HCFlow:
    """Load any supported model file; returns an ``eval()`` :class:`SRFlow` or :class:`HCFlow`.

    ``config``: official YAML path, :class:`ModelConfig`, or preset name; required for
    ``.pth`` files, optional for our safetensors (overrides the stored config only if
    given).  RRDB-only files give a model whose flow is freshly initialised.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    dev = resolve_device(device)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        meta = read_safetensors_meta(path)
        if meta.get("format") != FORMAT or "config" not in meta:
            raise CheckpointError(f"{path}: not an SRFlow Studio model (missing format/config metadata)")
        cfg = _config_from(config) if config is not None else config_from_meta(meta)
        model = build_model(cfg)
        sd = load_file(str(path))
        check_state_dict(model, sd, source=str(path))
        model.load_state_dict(sd)
        check_haar(model, str(path))
        model.meta = meta
    else:
        if config is None:
            raise CheckpointError(f"{path}: an official .pth needs its YAML config (config=...) "
                                  "or a preset name")
        cfg = _config_from(config)
        sd, kind = normalize_official(_read_pth(path))
        model = build_model(cfg)
        if (kind == "hcflow") != isinstance(cfg, HCFlowConfig):
            raise CheckpointError(f"{path}: a {'HCFlow' if kind == 'hcflow' else 'SRFlow'} checkpoint, but the "
                                  f"config {cfg.name!r} is {'HCFlow' if isinstance(cfg, HCFlowConfig) else 'SRFlow'}")
        if kind in ("full", "hcflow"):
            check_state_dict(model, sd, source=str(path))
            model.load_state_dict(sd)
            check_haar(model, str(path))
        else:
            check_state_dict(model, sd, subset="RRDB.", source=str(path))
            model.load_state_dict(sd, strict=False)
        model.meta = {"format": "official-" + kind, "source": path.name}
    model.identity = model_identity(model)
    return model.to(dev).eval()


def model_identity(model: SRFlow) -> str:
    """A short fingerprint of architecture + weights (used by session files)."""
    import hashlib

    h = hashlib.sha256(model.cfg.to_json().encode())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        t = v.detach().cpu().contiguous().float()
        h.update(t.flatten()[:: max(1, t.numel() // 64)].numpy().tobytes())
    return h.hexdigest()[:16]
