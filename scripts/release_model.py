"""Turn a ``ferbatch train`` output folder into a bundled, calibrated classifier and its record.

1. Validation logits of ``best.pt`` on FER2013Valid (majority protocol).
2. Optional post-hoc logit adjustment (Menon et al. 2021): ``bias = (tau_trained - tau) * log(prior)``
   where tau_trained is 1 for a ``logit_adjust`` run, else 0, and prior the training label prior.
3. Temperature scaling (Guo et al. 2017) fitted on the same validation images; ECE (15 bins) before
   and after. The bias and 1/T are baked into the exported graph (``nets.calibrated``), so the
   graph's softmax is the calibrated ``emotion_prob``.
4. Export ``bundled/NAME.onnx`` (verified against PyTorch), measure CPU latency per face against the
   baseline model in the same run (ONNX Runtime, 1 thread, best of 5 repeats, batch 1 and 32), and
   write ``bundled/train-vN/release.json`` (the numbers the tests reproduce), ``log.txt`` and
   ``train_summary.json``.

Usage: python scripts/release_model.py --train-dir model_dir/ --name ferbatch-ferplus-cnn-v2 --tau 0.5 \\
           --baseline ferbatch/models/bundled/ferbatch-ferplus-cnn-v1.onnx [--val ../shared/data/ferplus/FER2013Valid]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np

from ferbatch.labels import EMOTIONS
from ferbatch.models.runners.onnxruntime import OrtRunner
from ferbatch.training.calibrate import ece, fit_temperature
from ferbatch.training.data import load_faces
from ferbatch.training.evaluate import metrics
from ferbatch.training.nets import build_model, calibrated
from ferbatch.training.train import _require_torch, export_onnx, predict_logits
from ferbatch.vision.classify import softmax

BUNDLED = Path(__file__).resolve().parent.parent / "ferbatch/models/bundled"


def latency_ms_per_face(path: str, batch: int, threads: int = 1, repeat: int = 40, rounds: int = 5) -> float:
    """Best-of-``rounds`` mean ms per face of ONNX Runtime on random (batch, 1, 48, 48) float32 input."""
    r = OrtRunner(path, threads=threads)
    x = np.random.default_rng(0).uniform(-1, 1, (batch, 1, 48, 48)).astype(np.float32)
    for _ in range(5):
        r.infer({"input": x})
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(repeat):
            r.infer({"input": x})
        best = min(best, (time.perf_counter() - t) / repeat / batch * 1000)
    return best


def portable(cfg: dict) -> dict:
    """The training config with this machine's absolute paths replaced by the documented layout."""
    out = dict(cfg)
    repo = BUNDLED.parent.parent.parent
    for key in ("data", "val", "out", "init"):
        v = out.get(key)
        if not v or not Path(v).is_absolute():
            continue
        p = Path(v)
        if key == "data":
            out[key] = "../shared/data/ferplus/FER2013Train.tar.gz (extracted by ferbatch train)"
        elif key == "val":
            out[key] = f"../shared/data/ferplus/{p.name}"
        elif key == "out":
            out[key] = "model_dir/"
        else:
            out[key] = str(p.relative_to(repo)) if p.is_relative_to(repo) else f"ferbatch/models/bundled/{p.name}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-dir", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--tau", type=float, default=None, help="post-hoc logit adjustment; default: as trained")
    ap.add_argument("--baseline", required=True, help="ONNX of the model to compare latency with")
    ap.add_argument("--val", default="../shared/data/ferplus/FER2013Valid")
    a = ap.parse_args()
    torch = _require_torch()
    torch.set_num_threads(1)
    d = Path(a.train_dir)
    summary = json.loads((d / "train_summary.json").read_text())
    cfg = summary["config"]
    model = build_model(cfg["width"], cfg.get("arch", "vgg"))
    model.load_state_dict(torch.load(d / "best.pt", weights_only=False)["model"])
    va = load_faces(a.val, 48)
    x = (torch.from_numpy(va.images).float().unsqueeze(1) / 255.0 - 0.5) / 0.5
    z = predict_logits(torch, model, x)
    trained_tau = 1.0 if cfg.get("balance") == "logit_adjust" else 0.0
    tau = trained_tau if a.tau is None else a.tau
    prior = np.asarray(summary["train_prior"], np.float64)
    bias = (trained_tau - tau) * np.log(np.maximum(prior, 1e-12))
    za = z + bias
    t = fit_temperature(za, va.labels)
    ece_before, ece_after = ece(softmax(za), va.labels), ece(softmax(za / t), va.labels)
    tag = a.name.rsplit("-", 1)[1]
    onnx_path = BUNDLED / f"{a.name}.onnx"
    diff = export_onnx(calibrated(model, t, bias.astype(np.float32)), onnx_path, sample=x[:256])
    got = OrtRunner(str(onnx_path), threads=1).infer({"input": x.numpy()})["logits"]
    m = metrics(softmax(got), va.labels)
    lat = {f"{name}_b{b}": latency_ms_per_face(p, b) for b in (1, 32) for name, p in (("new", str(onnx_path)), ("baseline", a.baseline))}
    rec = {
        "model": a.name,
        "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        "bytes": onnx_path.stat().st_size,
        "n": m["n"],
        "acc1": m["acc1"],
        "macro_f1": m["macro"]["f1"],
        "recall": {e: m["per_class"][e]["recall"] for e in EMOTIONS},
        "per_class": m["per_class"],
        "confusion": m["confusion"],
        "tau_trained": trained_tau,
        "tau": tau,
        "bias": [float(b) for b in bias],
        "temperature": t,
        "ece_before": ece_before,
        "ece_after": ece_after,
        "onnx_max_abs_diff": diff,
        "latency_ms_per_face_1_thread": lat,
        "latency_ratio_b1": lat["new_b1"] / lat["baseline_b1"],
        "latency_ratio_b32": lat["new_b32"] / lat["baseline_b32"],
    }
    rec_dir = BUNDLED / f"train-{tag}"
    rec_dir.mkdir(exist_ok=True)
    (rec_dir / "release.json").write_text(json.dumps(rec, indent=1))
    shutil.copy(d / "log.txt", rec_dir / "log.txt")
    (rec_dir / "train_summary.json").write_text(json.dumps({**summary, "config": portable(cfg)}, indent=1))
    print(json.dumps({k: v for k, v in rec.items() if k not in ("per_class", "confusion")}, indent=1))


if __name__ == "__main__":
    main()
