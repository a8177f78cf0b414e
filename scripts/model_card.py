"""Write the model card of a trained classifier: data and label protocol, the command that
reproduces it, validation metrics (``ferbatch eval``), CPU latency per face at batch 1 and 32
(ONNX Runtime, 1 thread and all cores), training time, and the dataset-licence caveat.

Usage: python scripts/model_card.py --model NAME --train-dir model_dir/ --card ferbatch/models/bundled/NAME.md
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from ferbatch.labels import EMOTIONS
from ferbatch.models.registry import load_registry, resolve_model_file
from ferbatch.models.runners.onnxruntime import OrtRunner
from ferbatch.training.evaluate import evaluate


def latency_ms_per_face(path: str, batch: int, threads: int, repeat: int = 50) -> float:
    r = OrtRunner(path, threads=threads)
    x = np.random.default_rng(0).uniform(-1, 1, (batch, 1, 48, 48)).astype(np.float32)
    for _ in range(5):
        r.infer({"input": x})
    t = time.perf_counter()
    for _ in range(repeat):
        r.infer({"input": x})
    return (time.perf_counter() - t) / repeat / batch * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--train-dir", required=True)
    ap.add_argument("--card", required=True)
    ap.add_argument("--val", default="../shared/data/ferplus/FER2013Valid")
    a = ap.parse_args()
    spec = load_registry().get(a.model, "classifier")
    f = str(resolve_model_file(spec))
    summary = json.loads((Path(a.train_dir) / "train_summary.json").read_text())
    res = evaluate(a.model, a.val)
    cores = len(os.sched_getaffinity(0))
    lat = {(b, t): latency_ms_per_face(f, b, t) for b in (1, 32) for t in (1, cores)}
    cfg = summary["config"]
    rows = "\n".join(
        f"| {e} | {m['precision']:.3f} | {m['recall']:.3f} | {m['specificity']:.3f} | {m['f1']:.3f} | {m['support']} |"
        for e, m in res["per_class"].items()
    )
    mac = res["macro"]
    card = f"""# {spec.name}: ferbatch's FER+ 8-class expression classifier

Trained by ferbatch's own code (`ferbatch/train.py`) on FER+ (Microsoft's relabelling of FER2013, 10 crowd votes
per image). sha256 `{spec.sha256}`, {os.path.getsize(f) / 1e6:.2f} MB, {spec.license}.

## Contract
- Input `input` [N, 1, 48, 48] float32: the face as a square gray crop resized to 48x48, x / 255, then (x - 0.5) / 0.5.
- Output `logits` [N, 8], softmax for probabilities, in FER+ order: {", ".join(EMOTIONS)}.
- Network: plain conv3x3/BN/ReLU blocks [{cfg["width"]}, {cfg["width"]}] pool [{2 * cfg["width"]}, {2 * cfg["width"]}] pool [{4 * cfg["width"]}, {4 * cfg["width"]}] pool [{8 * cfg["width"]}] pool, global average pooling, dropout 0.3, linear; ONNX opset 17 with a symbolic batch (runs on ONNX Runtime and TensorRT without custom ops). ONNX Runtime reproduces PyTorch to {summary["onnx_max_abs_diff"]:.1e} (max abs diff on 64 validation faces).

## Data and label protocol
- Train: FER2013Train (28,558 images; {cfg.get("limit") or "all"} used; images whose majority vote is unknown or NF dropped).
- Labels: `{cfg["label_mode"]}` mode — cross-entropy against the normalised 8 emotion votes (the FER+ paper's probability-distribution mode).
- Selection and early stopping: acc@1 on FER2013Valid, majority label (argmax of the votes, first on ties), unknown/NF dropped.
- Augmentation (train only): horizontal flip, rotation ±10°, scale ±10%, shift ±8%, brightness/contrast ±20%.
- AdamW (lr {cfg["lr"]}, weight decay {cfg["weight_decay"]}), one-cycle cosine schedule over {cfg["epochs"]} epochs, batch {cfg["batch"]}, seed {cfg["seed"]}.
- Training time: {summary["train_seconds"] / 60:.1f} min on a 2-core CPU (torch 2.13.0 CPU), {summary["epochs_run"]} epochs, best epoch {summary["best_epoch"]}.

Reproduce:
```
pip install -e ".[train]"
ferbatch train --data ../shared/data/ferplus/FER2013Train.tar.gz --val ../shared/data/ferplus/FER2013Valid --out model_dir/ --epochs {cfg["epochs"]}
python scripts/model_card.py --model {spec.name} --train-dir model_dir/ --card ferbatch/models/bundled/{spec.name}.md
```

## Validation (FER2013Valid, {res["n"]} images, majority protocol; `ferbatch eval --model {spec.name} --data ../shared/data/ferplus/FER2013Valid`)
acc@1 **{res["acc1"]:.4f}**, acc@5 {res["acc5"]:.4f}; macro precision {mac["precision"]:.3f}, recall {mac["recall"]:.3f}, specificity {mac["specificity"]:.3f}, F1 {mac["f1"]:.3f}.

| class | precision | recall | specificity | F1 | support |
|---|---|---|---|---|---|
{rows}

## CPU latency per face (ONNX Runtime, this 2-core machine)
| batch | 1 thread | {cores} threads |
|---|---|---|
| 1 | {lat[(1, 1)]:.3f} ms | {lat[(1, cores)]:.3f} ms |
| 32 | {lat[(32, 1)]:.3f} ms | {lat[(32, cores)]:.3f} ms |

## Licence caveat
The weights are ferbatch's own, but they were trained on FER2013 images (Kaggle/ICML 2013 challenge; research
use) with the FER+ labels (Microsoft, see FERPLUS_LICENSE.md in the data): use them for research and evaluation,
and check those terms before any other use. Expression labels are crowd judgements of posed and spontaneous faces,
not of what a person feels.
"""
    Path(a.card).write_text(card)
    print(card)


if __name__ == "__main__":
    main()
