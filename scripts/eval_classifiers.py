"""Measure each registry classifier: acc@1 on FER+ FER2013Valid and clip-level emotion on CREMA-D.

FER+ protocol: majority label from valid_labels.csv, images whose majority is unknown or NF
dropped. Images are the 48x48 gray faces, resized to the classifier input (gray classifiers), or
upscaled, run through YuNet and aligned with its landmarks (landmark classifiers; images where
YuNet finds no face fall back to a plain resize and are counted).

CREMA-D: the default detector runs on every frame, the classifier on each face; the clip label is
the argmax of the mean of per-frame probabilities, compared with the crowd's face-only vote.

Usage: FERBATCH_MODEL_MIRROR=../shared/models python scripts/eval_classifiers.py [--data ../shared/data]
Prints a Markdown table and writes JSON next to it when --json is given.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import cv2
import numpy as np

from ferbatch.classify import Classifier, extract_crops
from ferbatch.config import JobConfig
from ferbatch.detect import Detections
from ferbatch.graphs import prepare_classifier
from ferbatch.labels import EMOTIONS
from ferbatch.loaders import load_models
from ferbatch.pipeline import Shard, process_shard
from ferbatch.registry import load_registry, resolve_model_file
from ferbatch.runners.onnxruntime import OrtRunner
from ferbatch.video import probe_video


def ferplus_valid(data: Path, cls: Classifier, aligner=None) -> dict:
    rows = [r for r in csv.DictReader(open(data / "ferplus/valid_labels.csv")) if r["ferplus_majority"] in EMOTIONS]
    truth = np.array([EMOTIONS.index(r["ferplus_majority"]) for r in rows])
    inp = cls.spec.input
    crops, fallback = [], 0
    for r in rows:
        g = cv2.imread(str(data / "ferplus/FER2013Valid" / r["ferplus_image"]), cv2.IMREAD_GRAYSCALE)
        if cls.spec.crop.get("mode") == "align5":
            rgb = cv2.cvtColor(cv2.resize(g, (160, 160), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2RGB)
            d = aligner.detect([rgb])
            if len(d) == 0:
                fallback += 1
                d = Detections(np.zeros(1, np.int32), np.array([[0, 0, 160, 160]], np.float32), np.ones(1, np.float32),
                               None)
                spec = cls.spec.__class__(**{**cls.spec.__dict__, "crop": {"mode": "square", "scale": 1.0}})
                crops.append(extract_crops([rgb], d, spec)[0])
            else:
                crops.append(extract_crops([rgb], d[:1] if hasattr(d, "__getitem__") else d, cls.spec)[0])
        else:
            crops.append(cv2.resize(g, (inp.width, inp.height), interpolation=cv2.INTER_AREA)[..., None])
    probs = cls.classify(np.stack(crops))
    pred = np.nanargmax(probs, 1)
    known = ~np.isnan(probs).all(0)
    per_class = {e: float((pred[truth == i] == i).mean()) for i, e in enumerate(EMOTIONS) if (truth == i).any()}
    f1s = []
    for i in range(8):
        tp = ((pred == i) & (truth == i)).sum(); fp = ((pred == i) & (truth != i)).sum(); fn = ((pred != i) & (truth == i)).sum()
        f1s.append(2 * tp / max(2 * tp + fp + fn, 1))
    no_contempt = truth != EMOTIONS.index("contempt")
    return {"images": len(rows), "acc1": float((pred == truth).mean()), "acc1_without_contempt": float((pred == truth)[no_contempt].mean()),
            "macro_f1": float(np.mean([f for i, f in enumerate(f1s) if known[i]])), "per_class_recall": per_class,
            "align_fallback": fallback}


def cremad(data: Path, cfg: JobConfig) -> dict:
    models = load_models(cfg, threads=2)
    out = {}
    for r in csv.DictReader(open(data / "videos_emotion_cremad_labels.csv")):
        p = data / "videos_emotion_cremad" / r["flv"]
        info, index = probe_video(p)
        _, rows, res = process_shard(Shard("c", str(p), 0, 0, None, index), models)
        mean = np.nanmean(rows.probs, 0)
        out[r["clip"]] = {"vote": r["face_only_perceived_vote"], "pred": EMOTIONS[int(np.nanargmax(mean))],
                          "mean_probs": {e: round(float(v), 3) for e, v in zip(EMOTIONS, mean) if not np.isnan(v)},
                          "frames": res.frames, "faces": res.faces}
    models.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--json")
    a = ap.parse_args()
    data = Path(a.data)
    reg = load_registry()
    aligner = load_models(JobConfig(detector="yunet-2026may", classifier="mobilefacenet-fer-2022july"), threads=2).detector
    results = {}
    for name, spec in reg.models.items():
        if spec.kind != "classifier":
            continue
        try:
            f = resolve_model_file(spec, allow_download=False)
        except Exception as e:  # noqa: BLE001 - report and go on
            results[name] = {"error": str(e).split("|", 1)[-1].strip()}
            continue
        t = time.perf_counter()
        cls = Classifier(OrtRunner(prepare_classifier(f, spec), threads=2, max_batch=64), spec)
        r = ferplus_valid(data, cls, aligner)
        det = "yunet-2026may" if spec.requires_landmarks else None
        r["cremad"] = cremad(data, JobConfig(detector=det, classifier=name))
        r["seconds"] = round(time.perf_counter() - t, 1)
        results[name] = r
    print("| classifier | FER+ valid acc@1 (8 cl.) | acc@1 w/o contempt | macro-F1 | CREMA-D HAP | CREMA-D NEU |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | not available: {r['error'][:80]} | | | | |")
            continue
        c = r["cremad"]
        cell = lambda k: f"{c[k]['pred']} (vote {c[k]['vote']})"  # noqa: E731
        print(f"| {name} | {r['acc1']:.3f} ({r['images']} img) | {r['acc1_without_contempt']:.3f} | {r['macro_f1']:.3f} | "
              f"{cell('1001_DFA_HAP_XX')} | {cell('1001_DFA_NEU_XX')} |")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
