"""SRFlow Studio core: a checkpoint-compatible SRFlow (and SRFlow-DA) in PyTorch."""
from .config import FlowConfig, ModelConfig, RRDBConfig, PRESETS, preset, from_official_yaml
from .model import SRFlow, Latents, Condition, NLL
from .checkpoint import load_model, save_safetensors, CheckpointError

__all__ = ["FlowConfig", "ModelConfig", "RRDBConfig", "PRESETS", "preset", "from_official_yaml",
           "SRFlow", "Latents", "Condition", "NLL", "load_model", "save_safetensors", "CheckpointError"]
