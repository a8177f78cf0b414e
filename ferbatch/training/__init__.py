"""Training and evaluation of expression classifiers: labelled-face loading (:mod:`.data`: FER+,
one folder per emotion), training with ONNX export (:mod:`.train`, needs the ``train`` extra) and
metrics (:mod:`.evaluate`). Never runs inside a job."""
