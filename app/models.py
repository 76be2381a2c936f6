"""The app's model registry: which model files exist, and what each loaded model is.

Shipped models live in ``assets/`` (:data:`SHIPPED`, name -> path, in menu order).
``studio_4x`` (SRFlow) is the default; the HCFlow files are optional and listed when
present.  Family and kind are read from the loaded model (the
:class:`flow.models.protocol.FlowModel` attributes, from the file's metadata), never
guessed from the file name:

* family: a :mod:`flow.models.registry` family (``"srflow"``, ``"hcflow"``);
* kind ``"sr"`` (super-resolution of a bicubic LR) or ``"rescaling"`` (a
  downscaler/upscaler pair, with ``downscale``/``upscale``/``rescale_roundtrip``).

No Gradio here (tested directly).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flow.models.registry import family

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"

#: name -> file of the models shipped in assets/ (the first one is required by launch.py)
SHIPPED: dict[str, Path] = {
    "studio_4x": ASSETS / "studio_4x.safetensors",
    "hcflow_sr_4x": ASSETS / "hcflow_sr_4x.safetensors",
    "hcflow_rescaling_4x": ASSETS / "hcflow_rescaling_4x.safetensors",
}


def shipped_paths(required: Path | None = None) -> list[Path]:
    """The shipped model files to load by default: ``required`` (default: the first
    of :data:`SHIPPED`, listed even when missing so that the caller can explain it),
    then every other shipped file that exists."""
    first = required if required is not None else next(iter(SHIPPED.values()))
    return [first] + [p for p in SHIPPED.values() if p != first and p.is_file()]


@dataclass(frozen=True)
class ModelInfo:
    name: str            # the app's name for it (menu value, API argument)
    family: str          # "srflow" | "hcflow"
    kind: str            # "sr" | "rescaling"
    scale: int
    arch: str            # the config's architecture name
    local_edits: bool    # region edits decode a window (SRFlow) or the whole image (HCFlow)

    @property
    def label(self) -> str:
        k = " rescaling" if self.kind == "rescaling" else ""
        return f"{self.name} · {family(self.family).label}{k} · {self.scale}×"

    def as_dict(self) -> dict:
        return {"family": self.family, "kind": self.kind, "scale": self.scale, "arch": self.arch,
                "local_edits": self.local_edits}


def describe(name: str, model) -> ModelInfo:
    return ModelInfo(name, model.family, model.kind, int(model.scale), str(model.cfg.name),
                     bool(model.supports_region))
