from .synthetic_shapes import (
                               SEG_CLASSES,
                               SHAPE_CLASSES,
                               write_ade_shapes,
                               write_coco_shapes,
                               write_imagenet_shapes,
)

__all__ = [
    'SEG_CLASSES', 'SHAPE_CLASSES', 'write_ade_shapes', 'write_coco_shapes',
    'write_imagenet_shapes'
]
