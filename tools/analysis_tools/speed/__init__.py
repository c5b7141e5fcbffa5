"""Speed and memory of our backbones against the reference implementations
(mmpretrain, timm, each also under torch.compile, onnxruntime) and the
model's GEMM-only floor, measured interleaved in one run.
``tools/analysis_tools/benchmark.py`` is the command line."""
from .floor import GemmRecorder, gemm_floor_steps, record_gemms
from .memory import PeakLiveBytes, saved_activation_bytes
from .models import ARCHS, DETECTORS, build_backbones, build_detectors

__all__ = ['ARCHS', 'DETECTORS', 'GemmRecorder', 'PeakLiveBytes',
           'build_backbones', 'build_detectors', 'gemm_floor_steps',
           'record_gemms', 'saved_activation_bytes']
