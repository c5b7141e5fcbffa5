"""Hooks of the training loop."""
from .checkpoint_hook import SafeCheckpointHook, register_as_default

__all__ = ['SafeCheckpointHook', 'register_as_default']
