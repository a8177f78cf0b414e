"""Inference runners: one interface (``infer(feed) -> outputs``) over ONNX Runtime and TensorRT.

Runners know nothing about faces or videos. ``onnxruntime`` is the CPU path every test uses;
the TensorRT runner imports tensorrt/pycuda lazily and is never needed on the CPU path.
"""

from ferbatch.models.runners.onnxruntime import OrtRunner
from ferbatch.specs import Runner

__all__ = ["Runner", "OrtRunner"]
