"""The model families behind one protocol (:mod:`~flow.models.protocol`): SRFlow and
SRFlow-DA (:mod:`~flow.models.srflow`, configs in :mod:`~flow.models.config`, encoder in
:mod:`~flow.models.rrdb`) and HCFlow (:mod:`~flow.models.hcflow`,
:mod:`~flow.models.hcflow_config`, :mod:`~flow.models.hcflow_losses`); the family registry
(:mod:`~flow.models.registry`), checkpoint import/export (:mod:`~flow.models.checkpoint`)
and the random weights of tests and benchmarks (:mod:`~flow.models.randomize`)."""
from .checkpoint import CheckpointError, load_model, save_safetensors
from .config import PRESETS, FlowConfig, ModelConfig, RRDBConfig, from_official_yaml
from .hcflow import HCFlow
from .hcflow_config import HC_PRESETS, HCFlowConfig
from .protocol import NLL, Condition, FlowModel, Latents
from .registry import build, preset
from .srflow import SRFlow

__all__ = ["CheckpointError", "load_model", "save_safetensors", "PRESETS", "FlowConfig", "ModelConfig",
           "RRDBConfig", "from_official_yaml", "HCFlow", "HC_PRESETS", "HCFlowConfig", "NLL", "Condition",
           "FlowModel", "Latents", "build", "preset", "SRFlow"]
