"""Loading a config + checkpoint for inference, predicting and drawing
through the OpenMMLab visualizers; Grad-CAM maps of our backbones."""
from .cam import cam_model, cam_target_layers, grad_cam
from .predictions import TASKS, draw_prediction, load_model, predict

__all__ = ['TASKS', 'cam_model', 'cam_target_layers', 'draw_prediction',
           'grad_cam', 'load_model', 'predict']
