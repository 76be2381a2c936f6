"""The app's model registry: which model files exist, and what each loaded model is.

Shipped models live in ``assets/`` (:data:`SHIPPED`, name -> path, in menu order).
``studio_4x`` (SRFlow) is the default; the HCFlow files are optional and listed when
present.  Family and kind are read from the loaded model (the
:class:`flow.models.protocol.FlowModel` attributes, from the file's metadata), never
guessed from the file name:

* family: a :mod:`flow.models.registry` family (``"srflow"``, ``"hcflow"``);
* kind ``"sr"`` (super-resolution of a bicubic LR) or ``"rescaling"`` (a
  downscaler/upscaler pair, with ``downscale``/``upscale``/``rescale_roundtrip``).

The :class:`Catalog` of the models an app serves.  No Gradio here (tested directly).
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


class Catalog:
    """The models the app serves, ``{name: model}`` in menu order, with their
    :class:`ModelInfo`; the menus' choices and each tab's preselection."""

    def __init__(self, models: dict):
        if not models:
            raise ValueError("no model given")
        self.models = dict(models)
        self.infos = {name: describe(name, m) for name, m in self.models.items()}
        self.default = next(iter(self.models))

    def get(self, name) -> tuple[str, object]:
        """(name, model); the default model for an empty name."""
        if not name:
            name = self.default
        if name not in self.models:
            raise ValueError(f"unknown model {name!r}; available: {', '.join(self.models)}")
        return name, self.models[name]

    def choices(self, family: str | None = None, kind: str | None = None) -> list[tuple[str, str]]:
        """(label, name) of the models, optionally only one family/kind."""
        return [(i.label, n) for n, i in self.infos.items()
                if (family is None or i.family == family) and (kind is None or i.kind == kind)]

    def first(self, family=None, kind=None, scale=None, exclude=()) -> str | None:
        for n, i in self.infos.items():
            if ((family is None or i.family == family) and (kind is None or i.kind == kind)
                    and (scale is None or i.scale == scale) and n not in exclude):
                return n
        return None

    def compare_defaults(self) -> tuple[str | None, str | None]:
        """The Compare tab's preselection: an SRFlow model and an HCFlow SR model of the same
        scale when both exist, else the first two SR models."""
        a = self.first("srflow", "sr") or self.first(kind="sr") or self.default
        sc = self.infos[a].scale
        b = (self.first("hcflow", "sr", sc) or self.first("hcflow", None, sc, (a,))
             or self.first(None, None, sc, (a,)))
        return a, b

    def rescale_defaults(self) -> tuple[str | None, str | None]:
        """The Rescale tab's preselection: the first rescaling model and an SRFlow SR model
        of its scale (for the bicubic comparison)."""
        r = self.first(kind="rescaling")
        if r is None:
            return None, self.first("srflow", "sr")
        sc = self.infos[r].scale
        return r, self.first("srflow", "sr", sc) or self.first(None, "sr", sc)

    def notes(self, name: str) -> list[str]:
        """What the user should know about editing with this model."""
        i = self.infos[name]
        out = []
        if not i.local_edits:
            out.append(f"{name} is an {family(i.family).label} model: brush, take-region, masked normalization "
                       "and paste edits re-decode the whole image (only its finest latent level is local)")
        if i.kind == "rescaling":
            out.append(f"{name} is a rescaling model: it is made to upscale its own LR (Rescale tab); "
                       "on a bicubic LR its samples are only approximate")
        return out
