from .poolformer import PoolFormer

__all__ = ['PoolFormer']
