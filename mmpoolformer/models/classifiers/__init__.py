"""Classifiers (mmpretrain's ``ImageClassifier`` API; needs mmpretrain)."""
from .riformer_distiller import RIFormerDistiller

__all__ = ['RIFormerDistiller']
