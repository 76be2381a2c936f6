"""SRFlow Studio core: checkpoint-compatible SRFlow, SRFlow-DA and HCFlow in PyTorch.

Layers, inner to outer: :mod:`flow.ops` and :mod:`flow.layers` -> :mod:`flow.models`
(one :class:`FlowModel` protocol) -> :mod:`flow.editing` -> :mod:`flow.tools` (train,
evaluate, sr, bench, data, ncnn; ``python -m flow.<tool>``).  See docs/ARCHITECTURE.md.
"""
from .models import (HC_PRESETS, NLL, PRESETS, CheckpointError, Condition, FlowConfig, FlowModel, HCFlow,
                     HCFlowConfig, Latents, ModelConfig, RRDBConfig, SRFlow, build, from_official_yaml, load_model,
                     preset, save_safetensors)

__all__ = ["FlowConfig", "ModelConfig", "RRDBConfig", "PRESETS", "preset", "from_official_yaml",
           "SRFlow", "Latents", "Condition", "NLL", "load_model", "save_safetensors", "CheckpointError",
           "FlowModel", "HCFlow", "HCFlowConfig", "HC_PRESETS", "build"]
