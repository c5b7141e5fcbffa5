"""Hooks of the training loop (opt-in: name them in a config)."""
from .checkpoint_hook import SafeCheckpointHook

__all__ = ['SafeCheckpointHook']
