"""Grad-CAM (the ``grad-cam`` package) of our backbones' last stage.

A classifier's target is a class score; inside a detector or segmentor the
target is the mean activation of the backbone's last returned map.
Grad-CAM hooks the target stage's output and its gradient: an NCHW map in
every formulation of the backbone, so the user's model is used as it is.
"""
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from mmpoolformer.models import MetaFormer

METHODS = ('gradcam', 'gradcam++', 'xgradcam', 'eigencam', 'layercam')


class _Scores(nn.Module):
    """image -> (B, K) scores: class logits, or the mean of the backbone's
    last output for models without a classification head."""

    def __init__(self, model, task):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, x):
        if self.task == 'cls':
            return self.model(x, mode='tensor')
        return self.model.backbone(x)[-1].mean((1, 2, 3))[:, None]


def cam_target_layers(model) -> list:
    """The last stage of the (first) MetaFormer backbone in ``model``."""
    backbone = model if isinstance(model, MetaFormer) else \
        getattr(model, 'backbone', None)
    if not isinstance(backbone, MetaFormer):
        raise TypeError(f'{type(model).__name__} has no mmpoolformer '
                        'backbone to take a Grad-CAM of')
    return [backbone.stages[backbone.out_indices[-1]]]


def cam_model(model, task) -> nn.Module:
    return _Scores(model, task).eval()


def grad_cam(model, task, image: np.ndarray, mean, std,
             method: str = 'gradcam',
             target_category: Optional[int] = None):
    """``(overlay RGB uint8, cam in [0, 1], target)`` for an RGB uint8
    image already at the model's input size."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    classes = {'gradcam': pgc.GradCAM, 'gradcam++': pgc.GradCAMPlusPlus,
               'xgradcam': pgc.XGradCAM, 'eigencam': pgc.EigenCAM,
               'layercam': pgc.LayerCAM}
    if method not in classes:
        raise ValueError(f'unknown method {method!r}; choose one of '
                         f'{sorted(classes)}')
    scores = cam_model(model, task)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / \
        torch.tensor(std).view(1, 3, 1, 1)
    if target_category is None:
        with torch.no_grad():
            target_category = int(scores(x).argmax(1))
    with classes[method](model=scores,
                         target_layers=cam_target_layers(model)) as cam:
        heat = cam(input_tensor=x,
                   targets=[ClassifierOutputTarget(target_category)])[0]
    overlay = show_cam_on_image(image.astype(np.float32) / 255, heat,
                                use_rgb=True)
    return overlay, heat, target_category
