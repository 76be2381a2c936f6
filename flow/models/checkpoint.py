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

from . import registry

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


def read_pth(path: Path) -> dict[str, torch.Tensor]:
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


def check_constants(model, source: str) -> None:
    """Weights that are constants of the architecture (HCFlow rescaling's Haar kernels)
    must keep their values: refuse a file that changed them."""
    for name in registry.family(model.family).bad_constants(model):
        raise CheckpointError(f"{source}: {name} is not the constant Haar kernel")


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


def config_from_meta(meta: dict):
    """The config stored in one of our files (see :func:`flow.models.registry.config_from_dict`:
    SRFlow files written before ``RRDBConfig.tail`` existed read as the ESRGAN tail)."""
    return registry.config_from_dict(json.loads(meta["config"]), legacy=True)


def save_safetensors(model, path: str | Path, extra: dict | None = None) -> None:
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


def load_model(path: str | Path, config=None, device: str | torch.device = "auto"):
    """Load any supported model file; returns an ``eval()`` :class:`flow.models.protocol.FlowModel`
    (SRFlow or HCFlow, by the file's config).

    ``config``: official YAML path, a config object, or preset name; required for
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
        cfg = registry.resolve_config(config) if config is not None else config_from_meta(meta)
        model = registry.build(cfg)
        sd = load_file(str(path))
        check_state_dict(model, sd, source=str(path))
        model.load_state_dict(sd)
        check_constants(model, str(path))
        model.meta = meta
    else:
        if config is None:
            raise CheckpointError(f"{path}: an official .pth needs its YAML config (config=...) "
                                  "or a preset name")
        cfg = registry.resolve_config(config)
        sd, kind = normalize_official(read_pth(path))
        model = registry.build(cfg)
        got, want = registry.family_of_checkpoint(kind), registry.family_of(cfg)
        if got is not want:
            raise CheckpointError(f"{path}: a {got.label} checkpoint, but the config {cfg.name!r} is {want.label}")
        if kind != "rrdb":
            check_state_dict(model, sd, source=str(path))
            model.load_state_dict(sd)
            check_constants(model, str(path))
        else:
            check_state_dict(model, sd, subset=model.encoder_prefix, source=str(path))
            model.load_state_dict(sd, strict=False)
        model.meta = {"format": "official-" + kind, "source": path.name}
    model.identity = model_identity(model)
    return model.to(dev).eval()


def model_identity(model) -> str:
    """A short fingerprint of architecture + weights (used by session files)."""
    import hashlib

    h = hashlib.sha256(model.cfg.to_json().encode())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        t = v.detach().cpu().contiguous().float()
        h.update(t.flatten()[:: max(1, t.numel() // 64)].numpy().tobytes())
    return h.hexdigest()[:16]
