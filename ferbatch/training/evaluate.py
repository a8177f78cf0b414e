"""Evaluating an expression classifier on labelled faces: acc@1, acc@5, per-class and macro
precision / recall / specificity / F1, and the confusion matrix (CSV and PNG).

Face crops (FER+, its sample, any image under ``PHOTO_MIN_SIDE`` px with ``--faces auto``): gray-crop
classifiers get the images resized to their input; landmark classifiers (aligned RGB) get each face
upscaled to 160x160, run through YuNet and aligned with its 5 landmarks (a plain resize where YuNet
finds nothing, counted in ``align_fallback``).

Photos (larger images, or every image with ``--faces detect``): the detector's top face is cut with
the classifier's own crop, as ``ferbatch run`` cuts it, so a labelled set of whole photos measures
what users get, not the classifier on a 48 px thumbnail of a whole picture. Photos without a face
are classified whole and counted in ``no_face``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ferbatch.labels import EMOTIONS, argmax_known
from ferbatch.training.data import FaceSet, load_faces
from ferbatch.vision.classify import Classifier
from ferbatch.vision.tiling import AnyDetector
from ferbatch.vision.top_face import crop_top_faces

__all__ = ["FACE_MODES", "PHOTO_MIN_SIDE", "metrics", "classify_faces", "classify_photos", "evaluate", "write_outputs"]


def metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Metrics of predictions against labels.

    Args:
        probs: (N, 8) float32 in FER+ order; NaN columns are classes the model lacks (never predicted).
        labels: (N,) int64 true classes.

    Returns:
        dict with acc1, acc5, per_class (name -> precision, recall, specificity, f1, support),
        macro (precision, recall, specificity, f1 averaged over the classes present in the labels
        or the predictions, as scikit-learn's macro average), confusion ((8, 8) list, rows = truth).
    """
    pred = argmax_known(probs)
    top5 = np.argsort(-np.where(np.isnan(probs), -np.inf, probs), 1)[:, :5]
    n = len(labels)
    cm = np.zeros((8, 8), np.int64)
    np.add.at(cm, (labels, pred), 1)
    per = {}
    for i, e in enumerate(EMOTIONS):
        tp = cm[i, i]
        fp = cm[:, i].sum() - tp
        fn = cm[i, :].sum() - tp
        tn = n - tp - fp - fn
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        per[e] = {
            "precision": float(p),
            "recall": float(r),
            "specificity": float(tn / (tn + fp)) if tn + fp else 0.0,
            "f1": float(2 * p * r / (p + r)) if p + r else 0.0,
            "support": int(cm[i].sum()),
        }
    present = sorted(set(labels.tolist()) | set(pred.tolist()))
    macro = {k: float(np.mean([per[EMOTIONS[i]][k] for i in present])) for k in ("precision", "recall", "specificity", "f1")}
    return {
        "n": n,
        "acc1": float((pred == labels).mean()),
        "acc5": float((top5 == labels[:, None]).any(1).mean()),
        "per_class": per,
        "macro": macro,
        "confusion": cm.tolist(),
    }


FACE_MODES = ("auto", "detect", "crops")
# px: a labelled image whose shorter side is at least this is taken as a photo to find the face in
# (``--faces auto``); smaller ones as face crops. Twice FER+'s 48 px crops, so FER+ and its sample stay crops.
PHOTO_MIN_SIDE = 96


def classify_faces(cls: Classifier, faces: FaceSet, aligner=None) -> tuple[np.ndarray, int]:
    """(N, 8) probabilities for the face crops of ``faces``, and how many fell back from alignment.

    Each crop is resized whole to the classifier's input (gray classifiers), or upscaled to 160x160
    and aligned with ``aligner``'s 5 landmarks (``align5`` classifiers; a plain resize where it finds
    no face, counted in the second value).

    Raises:
        ValueError: an ``align5`` classifier without ``aligner``.
    """
    inp = cls.spec.input
    if cls.spec.crop.get("mode") != "align5":
        x = np.stack([cv2.resize(im, (inp.width, inp.height), interpolation=cv2.INTER_AREA) for im in faces.images])[..., None]
        if inp.channels == 3:
            x = np.repeat(x, 3, axis=3)
        return cls.classify(x), 0
    if aligner is None:
        raise ValueError("classify_faces | an aligned classifier needs a landmark detector (aligner)")
    crops, found = [], 0
    for im in faces.images:
        rgb = cv2.cvtColor(cv2.resize(im, (160, 160), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2RGB)
        c, f = crop_top_faces(aligner, cls.spec, [rgb])
        crops.append(c[0])
        found += int(f[0])
    return cls.classify(np.stack(crops)), len(faces.images) - found


def classify_photos(
    cls: Classifier, detector: AnyDetector, faces: FaceSet, chunk: int = 8, progress: Callable[[int, int], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Classify labelled photos as ``ferbatch run`` would: each file of ``faces`` is read again in
    colour at its own size, the detector's top face is cut with the classifier's crop
    (:func:`ferbatch.vision.top_face.crop_top_faces`) and classified, ``chunk`` photos at a time;
    ``progress(done, total)`` is called after each chunk.

    Returns:
        probs: (N, 8) float32 in :data:`~ferbatch.labels.EMOTIONS` order.
        found: (N,) bool, False where the detector found no face (that photo was classified whole).

    Raises:
        ConfigError: a file can no longer be read.
    """
    from ferbatch.errors import ConfigError

    probs, found = [], []
    for i in range(0, len(faces.names), chunk):
        frames = []
        for name in faces.names[i : i + chunk]:
            bgr = cv2.imread(str(faces.root / name), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ConfigError(f"{faces.root / name} | cannot be read as an image any more")
            frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
        crops, f = crop_top_faces(detector, cls.spec, frames)
        probs.append(cls.classify(crops))
        found.append(f)
        if progress is not None:
            progress(i + len(frames), len(faces.names))
    return np.concatenate(probs), np.concatenate(found)


def evaluate(
    model: str | None,
    data: str | os.PathLike[str],
    threads: int = 0,
    faces_mode: str = "auto",
    detector: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    prior: str | None = None,
    align: bool | None = None,
) -> dict:
    """Evaluate the registry classifier ``model`` (a name, or a file whose sha256 is a registry
    entry's; None = the registry's default classifier) on the labelled images in ``data``.

    Args:
        faces_mode: "crops": every image is a face crop, resized whole to the classifier's input;
            "detect": every image is a photo, its face found and cut as ``ferbatch run`` does
            (:func:`classify_photos`); "auto": the photos are the images whose shorter side is
            >= :data:`PHOTO_MIN_SIDE` px, the rest crops.
        detector: registry detector for the photos (and for aligning ``align5`` classifiers);
            default: the registry's detector (its landmark detector for ``align5`` classifiers).
        progress: ``progress(done, total)`` as the photos go through the detector.
        prior, align: the run settings ``--prior`` and ``--align`` (None = the registry's;
            :func:`ferbatch.models.prior.configure_classifier`).

    Returns:
        :func:`metrics` plus ``faces`` (the mode), ``photos`` (images that went through the
        detector), ``detector``, ``no_face`` / ``no_face_files`` (photos without a face, classified
        whole, as ``ferbatch run`` would give no row for them; the first 20 names), ``acc1_faces_found``
        (acc@1 without those, when there are some), ``align_fallback``, ``skipped``, ``classes_missing``.

    Raises:
        ConfigError, ModelError: unknown model or mode, bad data folder, unreadable image.
    """
    from ferbatch.config import JobConfig
    from ferbatch.errors import ConfigError
    from ferbatch.models.graphs import prepare_classifier
    from ferbatch.models.load import load_models
    from ferbatch.models.prior import configure_classifier
    from ferbatch.models.registry import load_registry, resolve_model_file, sha256_file
    from ferbatch.models.runners.onnxruntime import OrtRunner

    reg = load_registry()
    explicit = None
    if model is None:
        if not reg.default_classifier:
            raise ConfigError(f"{reg.path} | names no [defaults] classifier; pass --model")
        model = reg.default_classifier
    if os.path.isfile(model):
        sha = sha256_file(model)
        names = [n for n, s in reg.models.items() if s.sha256 == sha and s.kind == "classifier"]
        if not names:
            raise ConfigError(f"{model} | not a registry classifier (sha256 {sha}); add an entry to {reg.path} first")
        model, explicit = names[0], model
    spec = configure_classifier(reg.get(model, "classifier"), prior, align)  # the registry's prior and crop alignment, as `ferbatch run`
    if faces_mode not in FACE_MODES:
        raise ConfigError(f"faces mode {faces_mode!r} | expected one of {', '.join(FACE_MODES)}")
    faces = load_faces(data, 48 if spec.input.height <= 64 else 112)
    threads = threads or max(1, os.cpu_count() or 1)
    cls = Classifier(OrtRunner(prepare_classifier(resolve_model_file(spec, explicit), spec), threads=threads, max_batch=256), spec)
    photo = {
        "auto": faces.sizes.min(1) >= PHOTO_MIN_SIDE,
        "detect": np.ones(len(faces.labels), bool),
        "crops": np.zeros(len(faces.labels), bool),
    }[faces_mode]
    det_name = detector or (reg.default_landmark_detector if spec.requires_landmarks else reg.default_detector)
    finder = None
    if photo.any() or spec.requires_landmarks:
        if not det_name and spec.requires_landmarks:
            raise ConfigError(
                f"classifier {spec.name} | needs 5 face landmarks, and the registry {reg.path} names no [defaults] landmark_detector"
            )
        if not det_name:
            raise ConfigError(f"{data} | holds photos, and the registry {reg.path} names no [defaults] detector; pass --detector")
        cfg = JobConfig(
            detector=det_name, classifier=spec.name, classifier_file=explicit, backend="onnxruntime", prior=spec.prior, align=align
        )
        finder = load_models(cfg, threads=threads).detector
    probs = np.empty((len(faces.labels), 8), np.float32)
    fallback, found = 0, np.ones(len(faces.labels), bool)
    if (~photo).any():
        probs[~photo], fallback = classify_faces(cls, faces.take(~photo), finder)
    if photo.any():
        assert finder is not None
        probs[photo], found[photo] = classify_photos(cls, finder, faces.take(photo), progress=progress)
    res = metrics(probs, faces.labels)
    no_face = [n for n, f in zip(faces.names, found, strict=True) if not f]
    if no_face and found.any():
        res["acc1_faces_found"] = float((argmax_known(probs[found]) == faces.labels[found]).mean())
    res.update(
        model=spec.name,
        data=str(data),
        skipped=dict(faces.skipped),
        faces=faces_mode,
        photos=int(photo.sum()),
        detector=det_name if finder is not None else None,
        no_face=len(no_face),
        no_face_files=no_face[:20],
        align_fallback=fallback,
        classes_missing=[e for e, col in zip(EMOTIONS, probs.T, strict=True) if np.isnan(col).all()],
    )
    return res


def write_outputs(res: dict, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write metrics.json, confusion.csv and confusion.png; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.json").write_text(json.dumps(res, indent=1))
    with open(d / "confusion.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["truth \\ predicted", *EMOTIONS])
        for e, row in zip(EMOTIONS, res["confusion"], strict=True):
            w.writerow([e, *row])
    cm = np.asarray(res["confusion"], float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(8):
        for j in range(8):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(8), EMOTIONS, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(8), EMOTIONS, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    ax.set_title(f"{res.get('model', '')}: acc@1 {res['acc1']:.3f} (n={res['n']})", fontsize=9)
    fig.colorbar(im, fraction=0.046)
    fig.tight_layout()
    fig.savefig(d / "confusion.png")
    plt.close(fig)
    return [d / "metrics.json", d / "confusion.csv", d / "confusion.png"]
