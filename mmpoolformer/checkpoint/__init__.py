from .convert import (FORMATS, convert_to_mmpoolformer, detect_format,
                      unwrap_checkpoint)
from .loading import CheckpointMismatchError, load_backbone_checkpoint

__all__ = [
    'FORMATS', 'convert_to_mmpoolformer', 'detect_format', 'unwrap_checkpoint',
    'CheckpointMismatchError', 'load_backbone_checkpoint'
]
