"""Save an exported classifier's raw logits on the training faces: a teacher file for ``ferbatch train --teacher``.

``ferbatch train --save-logits`` keeps a teacher's logits only when the teacher is trained by that run. This script
makes the same file from any exported ``vgg``/``res`` graph (e.g. a bundled release): the output of the graph's last
``Gemm`` (the linear layer), i.e. the logits *before* any logit adjustment or temperature a release baked in
(``(z + bias) * inv_t``, ``scripts/release_model.py``), so the teacher's prior is the one it was trained with.

Output: ``(N, 8) float32`` in ``ferbatch.training.data.load_faces`` order over the whole folder (every image whose
majority is an emotion), the layout ``ferbatch train`` expects: with ``--val selection`` it drops the selection rows
itself. Inputs are the training contract: 48x48 gray, ``(x / 255 - 0.5) / 0.5``.

Usage: python scripts/teacher_logits.py --model ferbatch/models/bundled/ferbatch-ferplus-cnn-v4.onnx \\
           --data ../shared/data/ferplus/FER2013Train.tar.gz --out v4_train_logits.npy
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from ferbatch.models.runners.onnxruntime import onnxruntime_module
    from ferbatch.training.data import load_faces
    from ferbatch.training.nets import raw_logits_graph
    from ferbatch.training.train import prepare_train_folder

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="an exported vgg/res classifier (.onnx)")
    ap.add_argument("--data", required=True, help="the training folder or FER2013Train.tar.gz (as given to ferbatch train)")
    ap.add_argument("--out", required=True, help="the .npy file to write")
    ap.add_argument("--limit", type=int, default=None, help="first N images (as ferbatch train --limit)")
    a = ap.parse_args()
    ort = onnxruntime_module()
    sess = ort.InferenceSession(raw_logits_graph(a.model), providers=["CPUExecutionProvider"])
    faces = load_faces(prepare_train_folder(a.data), 48, a.limit)
    x = ((faces.images.astype(np.float32) / 255.0 - 0.5) / 0.5)[:, None]
    name = sess.get_inputs()[0].name
    out = np.concatenate([sess.run(None, {name: x[i : i + 512]})[0] for i in range(0, len(x), 512)]).astype(np.float32)
    acc = float((out.argmax(1) == faces.labels).mean())
    from pathlib import Path

    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    np.save(a.out, out)
    print(f"{a.out}: {out.shape} raw logits; acc@1 against the training majority labels {acc:.4f}")


if __name__ == "__main__":
    main()
