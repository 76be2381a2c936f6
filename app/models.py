"""The app's model registry: which model files exist, and what each loaded model is.

Shipped models live in ``assets/`` (:data:`SHIPPED`, name -> path, in menu order).
``studio_4x`` (SRFlow) is the default; the HCFlow files are optional and listed when
present.  Family and kind are read from the loaded model (its config, i.e. the
file's metadata), never guessed from the file name:

* family ``"srflow"`` (:class:`flow.model.SRFlow`) or ``"hcflow"`` (:class:`flow.hcflow.HCFlow`);
* kind ``"sr"`` (super-resolution of a bicubic LR) or ``"rescaling"`` (HCFlow only: a
  downscaler/upscaler pair, with ``downscale``/``upscale``/``rescale_roundtrip``).

No Gradio here (tested directly).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flow.editing import supports_region

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"

#: name -> file of the models shipped in assets/ (the first one is required by launch.py)
SHIPPED: dict[str, Path] = {
    "studio_4x": ASSETS / "studio_4x.safetensors",
    "hcflow_sr_4x": ASSETS / "hcflow_sr_4x.safetensors",
    "hcflow_rescaling_4x": ASSETS / "hcflow_rescaling_4x.safetensors",
}

FAMILY_LABEL = {"srflow": "SRFlow", "hcflow": "HCFlow"}


def shipped_paths(required: Path | None = None) -> list[Path]:
    """The shipped model files to load by default: ``required`` (default: the first
    of :data:`SHIPPED`, listed even when missing so that the caller can explain it),
    then every other shipped file that exists."""
    first = required if required is not None else next(iter(SHIPPED.values()))
    return [first] + [p for p in SHIPPED.values() if p != first and p.is_file()]


def family(model) -> str:
    """``"hcflow"`` or ``"srflow"`` (from the model's config)."""
    return "hcflow" if getattr(model.cfg, "family", "srflow") == "hcflow" else "srflow"


def kind(model) -> str:
    """``"rescaling"`` or ``"sr"`` (from the model's config)."""
    return "rescaling" if getattr(model.cfg, "kind", "sr") == "rescaling" else "sr"


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
        return f"{self.name} · {FAMILY_LABEL[self.family]}{k} · {self.scale}×"

    def as_dict(self) -> dict:
        return {"family": self.family, "kind": self.kind, "scale": self.scale, "arch": self.arch,
                "local_edits": self.local_edits}


def describe(name: str, model) -> ModelInfo:
    return ModelInfo(name, family(model), kind(model), int(model.scale), str(model.cfg.name),
                     supports_region(model))
