# mmpretrain is an optional extra ('cls'): without it there is no head to add
import importlib.util

__all__ = []
if importlib.util.find_spec('mmpretrain') is not None:
    from .metaformer_head import MetaFormerClsHead  # noqa: F401
    __all__ = ['MetaFormerClsHead']
