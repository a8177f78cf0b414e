"""Labelled face-image datasets for evaluation and training.

Layouts:
- FER+ (Barsoum et al. 2016, arXiv 1608.01041; github.com/microsoft/FERPlus): a folder of 48x48
  gray PNGs with ``label.csv`` rows ``image, box, 10 vote counts`` in the order neutral,
  happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF. Majority protocol:
  the label is the class with the most votes (first one on ties); images whose majority is
  unknown or NF are dropped.
- FER+ sample (``labels.csv`` with a header): columns ``image`` and
  ``ferplus_votes(neutral,...,unknown,NF)`` (10 comma-separated counts in the order above), as in
  the shared ``fer_sample`` folder; same majority protocol. Without a votes column, a
  ``ferplus_majority`` column (an emotion name) gives a one-hot label.
- ImageFolder: one sub-folder per class named like a FER+ emotion, or by another dataset's name for
  it (``happy``, ``angry``, ``Sad``...: :data:`ferbatch.labels.EMOTION_ALIASES`); other folders are
  skipped and counted. The images may be face crops or whole photos (``ferbatch eval --faces``).
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ferbatch.errors import ConfigError
from ferbatch.labels import EMOTION_ALIASES, EMOTIONS, emotion_of

__all__ = ["FaceSet", "load_faces", "FERPLUS_VOTE_ORDER", "describe_counts"]

FERPLUS_VOTE_ORDER = (*EMOTIONS, "unknown", "NF")
_IMG_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class FaceSet:
    """Images and labels.

    Attributes:
        images: (N, S, S) uint8 gray faces, S = ``size``.
        labels: (N,) int64 majority label in FER+ order.
        votes: (N, 8) float32 normalised emotion votes (probability-distribution labels), or the
            one-hot label for ImageFolder data.
        names: N file names, relative to ``root``.
        root: the dataset folder.
        sizes: (N, 2) int32 height, width of each file's image in pixels, before the resize.
        skipped: reason -> count of images left out.
    """

    images: np.ndarray
    labels: np.ndarray
    votes: np.ndarray
    names: list[str]
    root: Path
    sizes: np.ndarray
    skipped: Counter = field(default_factory=Counter)

    def take(self, keep: np.ndarray) -> FaceSet:
        """The images selected by ``keep`` ((N,) bool mask or int indices), in that order; the same
        ``root`` and ``skipped``."""
        idx = np.arange(len(self.labels))[keep]
        return FaceSet(
            self.images[idx],
            self.labels[idx],
            self.votes[idx],
            [self.names[i] for i in idx],
            self.root,
            self.sizes[idx],
            Counter(self.skipped),
        )


def describe_counts(counts: dict) -> str:
    """``"majority unknown: 171, majority NF: 2"`` for a reason -> count mapping; ``"none"`` if empty."""
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "none"


def _votes_column(header: Sequence[str]) -> str | None:
    return next((h for h in header if h.startswith("ferplus_votes")), None)


def _read_sample_csv(path: Path) -> list[list[str]]:
    """``labels.csv`` of the FER+ sample layout as FER+ ``label.csv`` rows (image, box, 10 votes).

    Raises:
        ConfigError: no ``image`` column, or neither a votes nor a ``ferplus_majority`` column, or a
            row whose votes are not 10 numbers or whose majority is not a FER+ emotion.
    """
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        votes_col = _votes_column(header)
        if "image" not in header or (votes_col is None and "ferplus_majority" not in header):
            raise ConfigError(
                f"{path} | expected an 'image' column and a 'ferplus_votes(...)' or 'ferplus_majority' column; found: {', '.join(header)}"
            )
        rows = []
        for line, r in enumerate(reader, start=2):
            if votes_col is not None:
                counts = r[votes_col].split(",")
                if len(counts) != 10:
                    raise ConfigError(f"{path} | line {line}: '{votes_col}' has {len(counts)} values; expected 10")
            else:
                emotion = emotion_of(r["ferplus_majority"])
                if emotion is None:
                    raise ConfigError(
                        f"{path} | line {line}: '{r['ferplus_majority']}' is not a FER+ emotion ({', '.join(EMOTIONS)}) "
                        f"nor another name for one ({', '.join(EMOTION_ALIASES)})"
                    )
                counts = ["1" if e == emotion else "0" for e in FERPLUS_VOTE_ORDER]
            rows.append([r["image"], "", *counts])
    return rows


def load_faces(root: str | os.PathLike[str], size: int = 48, limit: int | None = None) -> FaceSet:
    """Load a FER+ folder (``label.csv``), a FER+ sample folder (``labels.csv`` with a header) or an
    ImageFolder tree (module docstring), as (N, size, size) uint8 gray faces.

    Raises:
        ConfigError: the folder does not exist, a labels file is malformed, or no usable image.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root} | not a folder")
    imgs: list[np.ndarray] = []
    labels: list[int] = []
    votes: list[np.ndarray] = []
    names: list[str] = []
    sizes: list[tuple[int, int]] = []
    skipped: Counter[str] = Counter()
    label_rows: list[list[str]] | None = None
    if (root / "label.csv").is_file():
        with open(root / "label.csv") as fh:
            label_rows = list(csv.reader(fh))
    elif (root / "labels.csv").is_file():
        label_rows = _read_sample_csv(root / "labels.csv")
    if label_rows is not None:
        for row in label_rows:
            if limit is not None and len(imgs) >= limit:
                break
            try:
                name, counts = row[0], np.array([float(v) for v in row[2:12]], np.float32)
            except ValueError as e:
                raise ConfigError(f"{root} | label row for {row[0]!r}: the 10 vote counts are not numbers ({e})") from e
            top = int(np.argmax(counts))
            if top >= 8:
                skipped[f"majority {FERPLUS_VOTE_ORDER[top]}"] += 1
                continue
            img = cv2.imread(str(root / name), cv2.IMREAD_GRAYSCALE) if (root / name).is_file() else None
            if img is None:
                skipped["unreadable image"] += 1
                continue
            imgs.append(img if img.shape == (size, size) else cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
            sizes.append(img.shape[:2])
            labels.append(top)
            votes.append(counts[:8] / counts[:8].sum())
            names.append(name)
    else:
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            emotion = emotion_of(d.name)
            if emotion is None:
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
                sizes.append(img.shape[:2])
                labels.append(EMOTIONS.index(emotion))
                votes.append(np.eye(8, dtype=np.float32)[EMOTIONS.index(emotion)])
                names.append(f"{d.name}/{f.name}")
    if not imgs:
        raise ConfigError(
            f"{root} | no usable labelled image (FER+ label.csv, a FER+ sample labels.csv, or one folder per emotion); "
            f"skipped: {describe_counts(skipped)}"
        )
    return FaceSet(
        np.stack(imgs), np.array(labels, np.int64), np.stack(votes).astype(np.float32), names, root, np.array(sizes, np.int32), skipped
    )
