"""Data transforms (registered on import)."""
from .loading import LoadImageOrSkip

__all__ = ['LoadImageOrSkip']
