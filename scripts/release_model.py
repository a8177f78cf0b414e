"""Turn a ``ferbatch train`` output folder into a bundled, calibrated classifier and its record.

1. Validation logits of ``best.pt`` on FER2013Valid (majority protocol); with ``--average``, of the
   uniform average of its weights and those of other runs / exported graphs of the same network
   fine-tuned from the same start (a "model soup", Wortsman et al. 2022, arXiv 2203.05482;
   BatchNorm statistics averaged too).
2. Optional post-hoc logit adjustment (Menon et al. 2021): ``bias = (tau_trained - tau) * log(prior)``
   where tau_trained is 1 for a ``logit_adjust`` run, else 0 (for a soup: the share of such members),
   and prior the training label prior.
3. Temperature scaling (Guo et al. 2017) fitted on the same validation images; ECE (15 bins) before
   and after. The bias and 1/T are baked into the exported graph (``nets.calibrated``), so the
   graph's softmax is the calibrated ``emotion_prob``.
4. Export ``bundled/NAME.onnx`` (verified against PyTorch), measure CPU latency per face against the
   baseline model in the same run (ONNX Runtime, 1 thread, best of 5 repeats, batch 1 and 32), and
   write ``bundled/train-vN/release.json`` (the numbers the tests reproduce), ``log.txt`` and
   ``train_summary.json``.
5. With ``--card``: write the model card ``bundled/NAME.md`` from the record, the training config
   and a Markdown file of notes (``--notes``: lever table, clip results, limits), inserted as is.

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
from ferbatch.training.nets import build_model, calibrated, init_from_onnx
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


def load_summary(torch, d: Path) -> dict:
    """``train_summary.json`` of a finished run; for a run stopped before its last epoch (a deadline),
    the same fields rebuilt from ``checkpoint.pt`` (history) and ``best.pt`` (config, epoch), the
    label prior recomputed from the training folder, and ``stopped_early`` set."""
    if (d / "train_summary.json").is_file():
        return json.loads((d / "train_summary.json").read_text())
    ck = torch.load(d / "checkpoint.pt", weights_only=False)
    best = torch.load(d / "best.pt", weights_only=False)
    cfg = best["config"]
    tr = load_faces(cfg["data"], 48, cfg.get("limit"))
    prior = tr.votes.mean(0) if cfg["label_mode"] == "probability" else np.bincount(tr.labels, minlength=8) / len(tr.labels)
    return {
        "best_val_acc1": best["val_acc1"],
        "best_val_macro_f1": best.get("val_macro_f1"),
        "best_epoch": best["epoch"],
        "epochs_run": len(ck["history"]),
        "train_seconds": sum(h["seconds"] for h in ck["history"]),
        "train_prior": [float(p) for p in prior],
        "history": ck["history"],
        "config": cfg,
        "stopped_early": True,
    }


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
    ap.add_argument("--average", nargs="+", action="extend", default=[], help="more run folders (best.pt) or .onnx graphs to average with")
    ap.add_argument("--name", required=True)
    ap.add_argument("--tau", type=float, default=None, help="post-hoc logit adjustment; default: as trained")
    ap.add_argument("--baseline", required=True, help="ONNX of the model to compare latency with")
    ap.add_argument("--val", default="../shared/data/ferplus/FER2013Valid")
    ap.add_argument("--card", action="store_true", help="also write bundled/NAME.md")
    ap.add_argument("--notes", help="Markdown inserted into the card (levers, clips, limits)")
    ap.add_argument("--command", default="", help="the training command, for the card")
    a = ap.parse_args()
    torch = _require_torch()
    torch.set_num_threads(1)
    d = Path(a.train_dir)
    summary = load_summary(torch, d)
    cfg = summary["config"]
    model = build_model(cfg["width"], cfg.get("arch", "vgg"))
    states = [torch.load(d / "best.pt", weights_only=False)["model"]]
    las = [cfg.get("balance") == "logit_adjust"]
    for extra in a.average:
        e = Path(extra)
        if e.suffix == ".onnx":
            m = build_model(cfg["width"], cfg.get("arch", "vgg"))
            tr = load_faces(cfg["data"], 48, 4096)
            init_from_onnx(m, e, (torch.from_numpy(tr.images[:2048]).float().unsqueeze(1) / 255.0 - 0.5) / 0.5)
            states.append(m.state_dict())
            las.append(False)
        else:
            states.append(torch.load(e / "best.pt", weights_only=False)["model"])
            las.append(json.loads((e / "train_summary.json").read_text())["config"].get("balance") == "logit_adjust")
    model.load_state_dict({k: sum(st[k] for st in states) / len(states) if v.dtype.is_floating_point else v for k, v in states[0].items()})
    va = load_faces(a.val, 48)
    x = (torch.from_numpy(va.images).float().unsqueeze(1) / 255.0 - 0.5) / 0.5
    z = predict_logits(torch, model, x)
    trained_tau = sum(las) / len(las)
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
        "soup": [str(Path(p).name) for p in [d, *a.average]] if a.average else None,
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
    if (d / "log.txt").is_file():
        shutil.copy(d / "log.txt", rec_dir / "log.txt")
    (rec_dir / "train_summary.json").write_text(json.dumps({**summary, "config": portable(cfg)}, indent=1))
    print(json.dumps({k: v for k, v in rec.items() if k not in ("per_class", "confusion")}, indent=1))
    if a.card:
        notes = Path(a.notes).read_text() if a.notes else ""
        (BUNDLED / f"{a.name}.md").write_text(card(rec, {**summary, "config": portable(cfg)}, notes, a))


def card(rec: dict, summary: dict, notes: str, a: argparse.Namespace) -> str:
    """The model card text (Markdown)."""
    cfg = summary["config"]
    w = cfg["width"]
    rows = "\n".join(
        f"| {e} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |" for e, m in rec["per_class"].items()
    )
    lat = rec["latency_ms_per_face_1_thread"]
    bias = ", ".join(f"{b:+.3f}" for b in rec["bias"])
    stopped = f" (stopped after {summary['epochs_run']} by the deadline)" if summary.get("stopped_early") else ""
    init = Path(cfg.get("init") or "").name or "scratch"
    members = (
        f"the uniform weight average (model soup) of {', '.join(f'`{m}`' for m in rec['soup'])}; the run folders are fine-tunes from `{init}`"
        if rec.get("soup")
        else f"fine-tuned from `{init}`"
    )
    soup = rec.get("soup") or ["model_dir"]
    train_dir = f"{soup[0]}/"
    average = "".join(
        f" \\\n    --average {m if m.endswith('.onnx') and '/' in m else (f'ferbatch/models/bundled/{m}' if m.endswith('.onnx') else m + '/')}"
        for m in soup[1:]
    )
    balance_text = {
        "none": "plain cross-entropy",
        "logit_adjust": "logit-adjusted loss, Menon et al. 2021: cross-entropy of logits + log(prior), prior = mean training vote distribution",
        "sqrt_sampling": "square-root sampling, Mahajan et al. 2018: each image drawn with probability proportional to n_class ** -0.5",
    }[cfg.get("balance", "none")]
    augment_text = (
        "horizontal flip, rotation +-10 deg, scale +-10 %, shift +-8 %, brightness/contrast +-20 %"
        if cfg.get("augment", "basic") == "basic"
        else "flip, crop jitter 0.85-1.35 of the face, shift 10 %, rotation 15 deg, blur, down-up sampling, JPEG, gamma, contrast/brightness, cutout"
    )
    return f"""# {rec["model"]}: ferbatch's FER+ 8-class expression classifier (calibrated{", balanced" if rec["tau"] > 0 else ""})

Trained by ferbatch's own code (`ferbatch/training/`) on FER+ (Microsoft's relabelling of FER2013, 10 crowd votes
per image), {members}. sha256 `{rec["sha256"]}`,
{rec["bytes"] / 1e6:.2f} MB. Weights MIT; trained on FER2013/FER+ images and labels: research and evaluation use (below).

## Contract
- Input `input` [N, 1, 48, 48] float32: the face as a square gray crop resized to 48x48, x / 255, then (x - 0.5) / 0.5.
- Output `logits` [N, 8] float32 in FER+ order ({", ".join(EMOTIONS)}); `softmax(logits)` is the calibrated
  probability: the graph ends with `(z + bias) / T`, bias = ({bias}) (post-hoc logit adjustment, tau {rec["tau"]} on a
  model trained with tau {rec["tau_trained"]}) and T = {rec["temperature"]:.4f} (temperature scaling fitted on FER2013Valid).
- Network `{cfg.get("arch", "vgg")}`: conv3x3/BN/ReLU blocks [{w}, {w}] pool [{2 * w}, {2 * w}] pool [{4 * w}, {4 * w}] pool [{8 * w}] pool,
  global average pooling, dropout 0.3, linear (BatchNorm folded into the convs by the export); ONNX opset 17,
  symbolic batch, no custom ops. ONNX Runtime reproduces PyTorch to {rec["onnx_max_abs_diff"]:.1e}.

## Data and training
- Train: FER2013Train (28,558 images; {cfg.get("limit") or "all"} used; majority unknown/NF dropped). Labels:
  `{cfg["label_mode"]}` (cross-entropy against the normalised 8 emotion votes, the FER+ paper's PLD mode).
- Class imbalance: `{cfg.get("balance", "none")}` ({balance_text}).
- Augmentation `{cfg.get("augment", "basic")}` (`ferbatch/training/augment.py`): {augment_text}.
- AdamW (lr {cfg["lr"]}, weight decay {cfg["weight_decay"]}), one-cycle cosine over {cfg["epochs"]} epochs{stopped}, batch {cfg["batch"]},
  seed {cfg["seed"]}; best epoch by `{cfg.get("select", "acc1")}` on FER2013Valid: epoch {summary["best_epoch"]}
  ({summary["train_seconds"] / 60:.0f} min on a shared 2-core CPU at nice 19). Log and summary: `train-{rec["model"].rsplit("-", 1)[1]}/`.

Reproduce:
```
pip install -e ".[train]"
{a.command}
python scripts/release_model.py --train-dir {train_dir}{average} --name {rec["model"]} --tau {rec["tau"]} \\
    --baseline ferbatch/models/bundled/ferbatch-ferplus-cnn-v1.onnx --card --notes notes.md
```

## Validation (FER2013Valid, {rec["n"]} images, majority protocol; `ferbatch eval --model {rec["model"]} --data ../shared/data/ferplus/FER2013Valid`)
acc@1 **{rec["acc1"]:.4f}**, macro-F1 **{rec["macro_f1"]:.4f}**. The validation set also chose the epoch, tau and T:
these figures are optimistic; FER+ test is held out by the project.

| class | precision | recall | F1 | support |
|---|---|---|---|---|
{rows}

## Calibration
Expected calibration error of the top-1 probability (15 equal-width bins, Guo et al. 2017) on FER2013Valid:
{rec["ece_before"]:.3f} before temperature scaling, **{rec["ece_after"]:.3f}** after (T = {rec["temperature"]:.4f}, baked into the graph).
The logit bias trades some accuracy on FER+'s own class frequencies (37 % neutral) for recall on the rare
classes; `emotion_prob` is calibrated for this decision rule on FER+ validation faces, not on the class mix of
any particular video.

## CPU latency per face (ONNX Runtime, 1 thread, shared 2-core machine, best of 5 rounds)
| batch | {rec["model"]} | ferbatch-ferplus-cnn-v1 (same run) | ratio |
|---|---|---|---|
| 1 | {lat["new_b1"]:.3f} ms | {lat["baseline_b1"]:.3f} ms | {rec["latency_ratio_b1"]:.2f} |
| 32 | {lat["new_b32"]:.3f} ms | {lat["baseline_b32"]:.3f} ms | {rec["latency_ratio_b32"]:.2f} |

{notes}
## Licence caveat
The weights are ferbatch's own, but they were trained on FER2013 images (Kaggle/ICML 2013 challenge; research
use) with the FER+ labels (Microsoft, see FERPLUS_LICENSE.md in the data): use them for research and evaluation,
and check those terms before any other use. Expression labels are crowd judgements of posed and spontaneous faces,
not of what a person feels.
"""


if __name__ == "__main__":
    main()
