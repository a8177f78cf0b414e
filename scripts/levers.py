"""Measure trained checkpoints on FER2013Valid for the lever table of a model card: acc@1,
macro-F1 and per-class recall of the raw logits, with test-time horizontal-flip averaging, and
with post-hoc logit adjustment (Menon et al. 2021) at a few tau; temperature scaling fitted on the
same images and the ECE (15 bins) before/after (``ferbatch.training.calibrate``).

Each argument is a ``ferbatch train`` output folder (``best.pt`` + ``train_summary.json``), or an
exported ``.onnx`` (then ``--train`` gives the folder whose mean vote distribution is the prior).
Usage: python scripts/levers.py --val ../shared/data/ferplus/FER2013Valid run_a/ model.onnx --train FER2013Train/ [--json levers.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ferbatch.labels import EMOTIONS
from ferbatch.training.calibrate import adjust_logits, ece, fit_temperature
from ferbatch.training.data import load_faces
from ferbatch.training.evaluate import metrics
from ferbatch.training.nets import build_model
from ferbatch.training.train import _require_torch, predict_logits
from ferbatch.vision.classify import softmax

TAUS = (0.0, 0.25, 0.5, 0.75, 1.0)


def row(name: str, logits: np.ndarray, labels: np.ndarray) -> dict:
    """acc@1, macro-F1, per-class recall and ECE of ``logits`` (N, 8) against ``labels`` (N,)."""
    m = metrics(softmax(logits), labels)
    return {
        "name": name,
        "acc1": m["acc1"],
        "macro_f1": m["macro"]["f1"],
        "recall": {e: m["per_class"][e]["recall"] for e in EMOTIONS},
        "ece": ece(softmax(logits), labels),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--val", default="../shared/data/ferplus/FER2013Valid")
    ap.add_argument("--json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train", help="FER+ training folder: the label prior for .onnx arguments")
    a = ap.parse_args()
    torch = _require_torch()
    torch.set_num_threads(a.threads)
    va = load_faces(a.val, 48)
    x = (torch.from_numpy(va.images).float().unsqueeze(1) / 255.0 - 0.5) / 0.5
    rows = []
    for run in a.runs:
        d = Path(run)
        if d.suffix == ".onnx":
            from ferbatch.models.runners.onnxruntime import OrtRunner

            if not a.train:
                raise SystemExit(f"{d} | an .onnx argument needs --train for the label prior")
            r = OrtRunner(str(d), threads=a.threads)
            z = r.infer({"input": x.numpy()})["logits"]
            zf = (z + r.infer({"input": x.flip(3).numpy()})["logits"]) / 2
            prior, trained_tau = load_faces(a.train, 48).votes.mean(0), 0.0
        else:
            summary = json.loads((d / "train_summary.json").read_text())
            cfg = summary["config"]
            model = build_model(cfg["width"], cfg.get("arch", "vgg"))
            model.load_state_dict(torch.load(d / "best.pt", weights_only=False)["model"])
            z = predict_logits(torch, model, x)
            zf = (z + predict_logits(torch, model, x.flip(3))) / 2
            prior = np.asarray(summary["train_prior"])
            trained_tau = 1.0 if cfg.get("balance") == "logit_adjust" else 0.0
        rows.append(row(f"{d.name}", z, va.labels))
        rows.append(row(f"{d.name} +flip", zf, va.labels))
        for tau in TAUS:
            if tau != trained_tau:
                rows.append(row(f"{d.name} tau={tau}", adjust_logits(z, prior, tau - trained_tau), va.labels))
        t = fit_temperature(z, va.labels)
        rows.append({**row(f"{d.name} T={t:.3f}", z / t, va.labels), "temperature": t})
    print("| run | acc@1 | macro-F1 | ECE | " + " | ".join(EMOTIONS) + " |")
    print("|---|---|---|---|" + "---|" * len(EMOTIONS))
    for r in rows:
        print(
            f"| {r['name']} | {r['acc1']:.4f} | {r['macro_f1']:.4f} | {r['ece']:.3f} | "
            + " | ".join(f"{r['recall'][e]:.2f}" for e in EMOTIONS)
            + " |"
        )
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
