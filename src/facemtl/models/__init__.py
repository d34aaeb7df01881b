"""Backbones, heads, the multi-task network and its checkpoints."""
from .backbones import Backbone, create_backbone, list_backbones, register_backbone
from .factory import ModelConfig, create_model, load_checkpoint, save_checkpoint
from .multitask import MultiTaskNet

__all__ = ["Backbone", "create_backbone", "list_backbones", "register_backbone", "ModelConfig", "create_model",
           "load_checkpoint", "save_checkpoint", "MultiTaskNet"]
