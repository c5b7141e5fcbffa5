"""Hooks of the training loop (opt-in: name them in a config)."""
from .checkpoint_hook import SafeCheckpointHook
from .logger_hook import RankZeroLoggerHook

__all__ = ['RankZeroLoggerHook', 'SafeCheckpointHook']
