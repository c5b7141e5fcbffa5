from .convert import (
                      FAMILIES,
                      FORMATS,
                      convert_to_mmpoolformer,
                      detect_format,
                      fit_shapes,
                      infer_families,
                      stage_layout,
                      unwrap_checkpoint,
)
from .loading import (
                      CheckpointMismatchError,
                      check_compatible,
                      describe_arch,
                      load_backbone_checkpoint,
                      target_shapes,
                      warn_if_head_missing,
)
from .torch_load import load_checkpoint_file, runner_checkpoint_globals

__all__ = [
    'FAMILIES', 'FORMATS', 'convert_to_mmpoolformer', 'detect_format',
    'fit_shapes', 'infer_families', 'stage_layout', 'unwrap_checkpoint',
    'CheckpointMismatchError', 'check_compatible', 'describe_arch',
    'load_backbone_checkpoint', 'load_checkpoint_file',
    'runner_checkpoint_globals', 'target_shapes', 'warn_if_head_missing'
]
