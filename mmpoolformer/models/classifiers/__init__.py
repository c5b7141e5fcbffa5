# mmpretrain is an optional extra ('cls'): without it there is no classifier
import importlib.util

__all__ = []
if importlib.util.find_spec('mmpretrain') is not None:
    from .riformer_distiller import RIFormerDistiller  # noqa: F401
    __all__ = ['RIFormerDistiller']
