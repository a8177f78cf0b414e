"""Measure each registry classifier: acc@1 on FER+ FER2013Valid and clip-level emotion on CREMA-D.

FER+ protocol: majority label from valid_labels.csv, images whose majority is unknown or NF
dropped. Images are the 48x48 gray faces, resized to the classifier input (gray classifiers), or
upscaled, run through YuNet and aligned with its landmarks (landmark classifiers; images where
YuNet finds no face fall back to a plain resize and are counted).

CREMA-D: the default detector runs on every frame, the classifier on each face; the clip label is
the argmax of the mean of per-frame probabilities, compared with the crowd's face-only vote; also
with the per-track smoothed probabilities (``vision.track.smooth_probs``, half-life 0.5 s, as
``ferbatch run`` writes ``smooth_prob_*``; the clips hold one face per frame, so one track).

Usage: FERBATCH_MODEL_MIRROR=../shared/models python scripts/eval_classifiers.py [--data ../shared/data] [--models a,b]
Prints a Markdown table and writes JSON next to it when --json is given.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import warnings
from pathlib import Path

import numpy as np

from ferbatch.config import JobConfig
from ferbatch.errors import FerbatchError
from ferbatch.labels import EMOTIONS
from ferbatch.media.probe import probe_video
from ferbatch.media.shards import Shard
from ferbatch.models.load import load_models
from ferbatch.models.registry import load_registry, resolve_model_file
from ferbatch.pipeline import process_shard
from ferbatch.training.evaluate import evaluate
from ferbatch.vision.track import smooth_probs


def ferplus_valid(data: Path, name: str) -> dict:
    """``ferbatch eval`` on FER2013Valid (majority protocol), plus acc@1 without contempt images."""
    res = evaluate(name, data / "ferplus/FER2013Valid")
    cm = np.asarray(res["confusion"])
    keep = [i for i, e in enumerate(EMOTIONS) if e != "contempt"]
    res["acc1_without_contempt"] = float(np.trace(cm[np.ix_(keep, keep)]) / cm[keep].sum())
    res["images"], res["macro_f1"] = res["n"], res["macro"]["f1"]
    res["per_class_recall"] = {e: m["recall"] for e, m in res["per_class"].items()}
    return res


def cremad(data: Path, cfg: JobConfig) -> dict:
    models = load_models(cfg, threads=2)
    out = {}
    with open(data / "videos_emotion_cremad_labels.csv") as f:
        clips = list(csv.DictReader(f))
    for r in clips:
        p = data / "videos_emotion_cremad" / r["flv"]
        info, index = probe_video(p)
        out_rows = process_shard(Shard("c", str(p), 0, 0, None, index), models)
        rows, res = out_rows.faces, out_rows.result
        smooth = smooth_probs(np.zeros(len(rows.probs), np.int64), rows.pts_ms, rows.probs, 0.5)
        with np.errstate(all="ignore"):
            mean = np.nanmean(rows.probs, 0) if len(rows.probs) else np.full(8, np.nan)
            mean_s = np.nanmean(smooth, 0) if len(smooth) else np.full(8, np.nan)
        out[r["clip"]] = {
            "vote": r["face_only_perceived_vote"],
            "pred": EMOTIONS[int(np.nanargmax(mean))],
            "pred_smoothed": EMOTIONS[int(np.nanargmax(mean_s))],
            "mean_probs": {e: round(float(v), 3) for e, v in zip(EMOTIONS, mean, strict=True) if not np.isnan(v)},
            "mean_probs_smoothed": {e: round(float(v), 3) for e, v in zip(EMOTIONS, mean_s, strict=True) if not np.isnan(v)},
            "frames": res.frames,
            "faces": res.faces,
        }
    models.close()
    return out


def main() -> None:
    warnings.filterwarnings("ignore", "Mean of empty slice")  # the contempt column of 7-class models is all NaN
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--json")
    ap.add_argument("--models", help="comma-separated registry classifiers (default: all)")
    a = ap.parse_args()
    data = Path(a.data)
    reg = load_registry()
    results = {}
    for name, spec in reg.models.items():
        if spec.kind != "classifier" or (a.models and name not in a.models.split(",")):
            continue
        try:
            resolve_model_file(spec, allow_download=False)
        except FerbatchError as e:  # not obtainable here: report and go on
            results[name] = {"error": str(e).split("|", 1)[-1].strip()}
            continue
        t = time.perf_counter()
        r = ferplus_valid(data, name)
        det = "yunet-2026may" if spec.requires_landmarks else None
        r["cremad"] = cremad(data, JobConfig(detector=det, classifier=name))
        r["seconds"] = round(time.perf_counter() - t, 1)
        results[name] = r
    print(
        "| classifier | FER+ valid acc@1 (8 cl.) | acc@1 w/o contempt | macro-F1 | CREMA-D HAP | CREMA-D NEU | smoothed HAP | smoothed NEU |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | not available: {r['error'][:80]} | | | | |")
            continue
        c = r["cremad"]

        def cell(k: str, c: dict = c, smoothed: bool = False) -> str:
            probs = c[k]["mean_probs_smoothed" if smoothed else "mean_probs"]
            pred = c[k]["pred_smoothed" if smoothed else "pred"]
            return f"{pred} {probs[pred]:.2f} (vote {c[k]['vote']})"

        print(
            f"| {name} | {r['acc1']:.3f} ({r['images']} img) | {r['acc1_without_contempt']:.3f} | {r['macro_f1']:.3f} | "
            f"{cell('1001_DFA_HAP_XX')} | {cell('1001_DFA_NEU_XX')} | "
            f"{cell('1001_DFA_HAP_XX', smoothed=True)} | {cell('1001_DFA_NEU_XX', smoothed=True)} |"
        )
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
