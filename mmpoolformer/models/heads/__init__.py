"""Classifier heads (mmpretrain's ``ClsHead`` API; needs mmpretrain)."""
from .metaformer_head import MetaFormerClsHead

__all__ = ['MetaFormerClsHead']
