"""Models: the registry and its package data (:mod:`.registry`, ``registry.toml``, ``bundled/``),
ONNX preparation (:mod:`.graphs`), a worker's loaded models (:mod:`.load`), the runners
(:mod:`.runners`) and TensorRT plan keys and cache (:mod:`.trt_plans`). Knows nothing about
faces or videos beyond the specs' contracts."""
