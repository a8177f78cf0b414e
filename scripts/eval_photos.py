"""What ``ferbatch eval`` measures on labelled photos: the detector and the pipeline's crop
(``--faces auto``) against resizing each whole photo to the classifier's input (``--faces crops``).

FER2013Valid faces (48x48 gray) are made into photos: each upscaled 3x (bicubic, 144 px) and pasted
at a random place in a 400x320 (width x height) frame of blurred noise, saved as JPEG (quality 92)
in one folder per class under another dataset's name for it (``happy``, ``angry``...). Then
:func:`ferbatch.training.evaluate.evaluate` runs in both modes for each classifier.

Usage: FERBATCH_MODEL_MIRROR=../shared/models python scripts/eval_photos.py --n 600 --models ferbatch-ferplus-cnn-v4,ferbatch-ferplus-cnn-v3
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ferbatch.labels import EMOTION_ALIASES, EMOTIONS
from ferbatch.training.data import load_faces
from ferbatch.training.evaluate import evaluate

# one other name per FER+ class (the first alias), the FER+ name where there is none
FOLDER = {e: next((a for a, v in EMOTION_ALIASES.items() if v == e), e) for e in EMOTIONS}


def noise_frame(rng: np.random.Generator) -> np.ndarray:
    """(320, 400) uint8 gray frame of blurred uniform noise (90..170, Gaussian sigma 6): a background with no face."""
    return cv2.GaussianBlur(rng.integers(90, 170, (320, 400)).astype(np.uint8), (0, 0), 6)


def write_photos(val: str, out: Path, n: int, seed: int = 0) -> int:
    """Write ``n`` FER+ faces of ``val`` (all if n >= their count) as labelled photos under ``out``; returns how many."""
    va = load_faces(val, 48)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(va.labels), n, replace=False) if n < len(va.labels) else np.arange(len(va.labels))
    for i in idx:
        frame = noise_frame(rng)
        y, x = int(rng.integers(20, 320 - 164)), int(rng.integers(20, 400 - 164))
        frame[y : y + 144, x : x + 144] = cv2.resize(va.images[i], (144, 144), interpolation=cv2.INTER_CUBIC)
        d = out / FOLDER[EMOTIONS[va.labels[i]]]
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / Path(va.names[i]).with_suffix(".jpg").name), frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return len(idx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--val", default="../shared/data/ferplus/FER2013Valid")
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--models", default="ferbatch-ferplus-cnn-v4")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        n = write_photos(a.val, Path(tmp), a.n)
        print(f"{n} FER2013Valid faces as photos")
        print("| classifier | --faces | acc@1 | macro-F1 | photos without a face | acc@1 on the photos with a face |")
        print("|---|---|---|---|---|---|")
        for name in a.models.split(","):
            for mode in ("auto", "crops"):
                r = evaluate(name, tmp, faces_mode=mode)
                found = f"{r['acc1_faces_found']:.4f}" if "acc1_faces_found" in r else ""
                print(f"| {name} | {mode} | {r['acc1']:.4f} | {r['macro']['f1']:.4f} | {r['no_face']} | {found} |")


if __name__ == "__main__":
    main()
