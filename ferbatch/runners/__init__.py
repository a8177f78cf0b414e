"""Inference runners: one interface (``infer(feed) -> outputs``) over ONNX Runtime and TensorRT.

Runners know nothing about faces or videos. ``onnxruntime`` is the CPU path every test uses;
the TensorRT runner imports tensorrt/pycuda lazily and is never needed on the CPU path.
"""

from ferbatch.runners.base import Runner
from ferbatch.runners.onnxruntime import OrtRunner

__all__ = ["Runner", "OrtRunner"]
