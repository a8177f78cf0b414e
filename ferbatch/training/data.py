"""Labelled face-image datasets for evaluation and training.

Layouts:
- FER+ (Barsoum et al. 2016, arXiv 1608.01041; github.com/microsoft/FERPlus): a folder of 48x48
  gray PNGs with ``label.csv`` rows ``image, box, 10 vote counts`` in the order neutral,
  happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF. Majority protocol:
  the label is the class with the most votes (first one on ties); images whose majority is
  unknown or NF are dropped.
- ImageFolder: one sub-folder per class named like a FER+ emotion (other names are skipped).
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ferbatch.errors import ConfigError
from ferbatch.labels import EMOTIONS

__all__ = ["FaceSet", "load_faces", "FERPLUS_VOTE_ORDER"]

FERPLUS_VOTE_ORDER = (*EMOTIONS, "unknown", "NF")
_IMG_EXT = {".png", ".jpg", ".jpeg", ".bmp"}


@dataclass
class FaceSet:
    """Images and labels.

    Attributes:
        images: (N, S, S) uint8 gray faces, S = ``size``.
        labels: (N,) int64 majority label in FER+ order.
        votes: (N, 8) float32 normalised emotion votes (probability-distribution labels), or the
            one-hot label for ImageFolder data.
        names: N file names.
        skipped: reason -> count of images left out.
    """

    images: np.ndarray
    labels: np.ndarray
    votes: np.ndarray
    names: list[str]
    skipped: Counter = field(default_factory=Counter)


def load_faces(root: str | os.PathLike[str], size: int = 48, limit: int | None = None) -> FaceSet:
    """Load a FER+ folder (``label.csv`` present) or an ImageFolder tree, resized to ``size``.

    Raises:
        ConfigError: the folder does not exist or holds no usable image.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root} | not a folder")
    imgs: list[np.ndarray] = []
    labels: list[int] = []
    votes: list[np.ndarray] = []
    names: list[str] = []
    skipped: Counter[str] = Counter()
    if (root / "label.csv").is_file():
        with open(root / "label.csv") as fh:
            label_rows = list(csv.reader(fh))
        for row in label_rows:
            if limit is not None and len(imgs) >= limit:
                break
            name, counts = row[0], np.array([float(v) for v in row[2:12]], np.float32)
            top = int(np.argmax(counts))
            if top >= 8:
                skipped[f"majority {FERPLUS_VOTE_ORDER[top]}"] += 1
                continue
            img = cv2.imread(str(root / name), cv2.IMREAD_GRAYSCALE)
            if img is None:
                skipped["unreadable image"] += 1
                continue
            imgs.append(img if img.shape == (size, size) else cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
            labels.append(top)
            votes.append(counts[:8] / counts[:8].sum())
            names.append(name)
    else:
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            if d.name not in EMOTIONS:
                skipped[f"folder {d.name!r} is not a FER+ emotion"] += sum(1 for _ in d.iterdir())
                continue
            for f in sorted(d.iterdir()):
                if limit is not None and len(imgs) >= limit:
                    break
                img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) if f.suffix.lower() in _IMG_EXT else None
                if img is None:
                    skipped["not an image"] += 1
                    continue
                imgs.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
                labels.append(EMOTIONS.index(d.name))
                votes.append(np.eye(8, dtype=np.float32)[EMOTIONS.index(d.name)])
                names.append(f"{d.name}/{f.name}")
    if not imgs:
        raise ConfigError(f"{root} | no usable labelled image (FER+ label.csv or one folder per emotion); skipped: {dict(skipped)}")
    return FaceSet(np.stack(imgs), np.array(labels, np.int64), np.stack(votes).astype(np.float32), names, skipped)
