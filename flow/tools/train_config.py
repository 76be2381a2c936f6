"""The training configuration (``configs/*.yaml``): model, data, optimiser, encoder stage
and run settings as typed dataclasses; unknown keys are refused.  The ``model`` entry is
resolved by :func:`flow.models.registry.train_model_config` (a preset of any family,
with overrides, or a full config)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..models import registry


@dataclass
class DataConfig:
    train_dirs: list[str] = field(default_factory=lambda: ["data/train"])
    crop: int = 96                 # HR crop size
    batch: int = 8
    zooms: list[float] = field(default_factory=lambda: [1.0])  # each photo also at these downscales
    synthetic: float = 0.0         # share of crops replaced by synthetic patterns (noise, checkers, ...)


@dataclass
class OptimConfig:
    steps: int = 20000             # flow steps
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75, 0.9, 0.95])
    gamma: float = 0.5
    quant: int = 32
    weight_l1: float = 0.0         # L1 on the tau=0 reconstruction (HCFlow+ style)
    l1_batch: int = 0              # images of each batch used for that L1 (0 = all)
    grad_clip: float = 10.0
    freeze_encoder_fraction: float = 0.5
    # HCFlow: NLL weight (HCFlow+ uses 2e-3 with weight_l1 = 1), rescaling losses
    weight_nll: float = 1.0
    weight_lr: float = 0.05        # rescaling: L2 of the flow LR towards bicubic
    weight_z: float = 1e-5         # rescaling: L2 of the latents
    weight_hr: float = 1.0         # rescaling: L1 of the reconstruction
    rescale_tau: float = 1.0       # rescaling: temperature of that reconstruction
    # HCFlow++ perceptual / GAN terms: need VGG19 weights (not available offline)
    weight_feature: float = 0.0
    weight_gan: float = 0.0


@dataclass
class EncoderConfig:
    pretrain_steps: int = 0        # L1 pre-training of the RRDB before the flow
    lr: float = 2e-4
    batch: int = 16
    checkpoint: str | None = None  # RRDB-only .pth/.safetensors to load instead (skips the L1 stage)
    init: str | None = None        # RRDB weights to start the L1 stage from (e.g. `python -m flow.ncnn` output)
    crop: int | None = None        # HR crop of the L1 stage (default: data.crop)


@dataclass
class RunConfig:
    dir: str = "runs/default"
    ckpt_every: int = 200
    keep: int = 2
    val_every: int = 500
    log_every: int = 10
    export: str | None = None      # safetensors path written at each checkpoint
    export_best: str | None = None # safetensors path written when a validation beats the best so far
    best_metric: str | None = None # validation key to maximise (default: psnr_gain_t0, rescaling psnr_gain_rescale)
    seed: int = 0
    val_images: list[str] = field(default_factory=lambda: ["astronaut", "coffee", "chelsea", "rocket"])
    val_crop: int = 128


@dataclass
class TrainConfig:
    model: object                  # a config of any family (flow.models.registry)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        model = registry.train_model_config(d.get("model"))

        def sub(klass, key):
            vals = d.get(key) or {}
            known = {f.name for f in dataclasses.fields(klass)}
            bad = set(vals) - known
            if bad:
                raise ValueError(f"unknown keys in '{key}': {sorted(bad)}")
            obj = klass(**vals)
            if klass is OptimConfig:
                obj.betas = tuple(float(b) for b in obj.betas)
            return obj

        cfg = cls(model=model.validate(), data=sub(DataConfig, "data"), optim=sub(OptimConfig, "optim"),
                  encoder=sub(EncoderConfig, "encoder"), run=sub(RunConfig, "run"))
        o = cfg.optim
        if o.weight_feature or o.weight_gan:
            raise ValueError("the HCFlow++ perceptual/GAN losses need ImageNet VGG19 weights, which are not "
                             "available offline; set optim.weight_feature and optim.weight_gan to 0")
        fam = registry.family_of(cfg.model)
        if not fam.separate_encoder and (cfg.encoder.pretrain_steps or cfg.encoder.checkpoint):
            raise ValueError(f"{fam.label} has no separate RRDB encoder: encoder.pretrain_steps/checkpoint "
                             "apply to SRFlow configs only")
        return cfg

    @classmethod
    def load(cls, path) -> "TrainConfig":
        import yaml

        return cls.from_dict(yaml.safe_load(Path(path).read_text()) or {})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
