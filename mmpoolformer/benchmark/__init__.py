"""Speed and memory of our backbones against the reference implementations
(mmpretrain, timm, onnxruntime), measured interleaved in one run.
``tools/analysis_tools/benchmark.py`` is the command line."""
from .memory import PeakLiveBytes, saved_activation_bytes
from .models import ARCHS, DETECTORS, build_backbones, build_detectors

__all__ = ['ARCHS', 'DETECTORS', 'PeakLiveBytes', 'build_backbones',
           'build_detectors', 'saved_activation_bytes']
