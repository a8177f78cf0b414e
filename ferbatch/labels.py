"""The FER+ label order every result is written in, and mapping other label orders into it.

The order (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt) is the one of
FER+ (Barsoum et al. 2016, arXiv 1608.01041) and of the ONNX model zoo's emotion_ferplus model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ferbatch.errors import ConfigError

__all__ = ["EMOTIONS", "EMOTION_COLORS", "EMOTION_ALIASES", "emotion_of", "to_ferplus_order", "argmax_known"]

EMOTIONS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)

# Other datasets' names for the FER+ classes (folder names of FER2013's Kaggle release, AffectNet,
# CK+, RAF-DB's class names, JAFFE/KDEF spelled out), lower case -> FER+ name.
EMOTION_ALIASES: dict[str, str] = {
    "happy": "happiness",
    "joy": "happiness",
    "surprised": "surprise",
    "sad": "sadness",
    "angry": "anger",
    "disgusted": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "contemptuous": "contempt",
    "neutrality": "neutral",
}


def emotion_of(name: str) -> str | None:
    """The FER+ emotion a dataset's class name means (case-insensitive; ``"Happy"`` -> ``"happiness"``),
    or None when it is none of them (:data:`EMOTIONS`, :data:`EMOTION_ALIASES`)."""
    key = name.strip().lower()
    return key if key in EMOTIONS else EMOTION_ALIASES.get(key)


# one colour per emotion ("#rrggbb"), the same in every plot and annotated video
EMOTION_COLORS: dict[str, str] = {
    "neutral": "#9e9e9e",
    "happiness": "#f4b400",
    "surprise": "#ab47bc",
    "sadness": "#4285f4",
    "anger": "#db4437",
    "disgust": "#0f9d58",
    "fear": "#795548",
    "contempt": "#00acc1",
}


def to_ferplus_order(probs: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Reorder class probabilities from a model's label order into the FER+ order.

    Args:
        probs: (M, C) float32 probabilities in the model's order, C == len(labels).
        labels: the model's label names, each one of EMOTIONS.

    Returns:
        (M, 8) float32 in EMOTIONS order; columns the model lacks (contempt for 7-class
        models) are NaN, which the Parquet writer stores as null.

    Raises:
        ConfigError: a label is not a FER+ emotion, or C does not match len(labels).
    """
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise ConfigError(f"classifier output | received shape {probs.shape}; expected (M, {len(labels)})")
    out = np.full((probs.shape[0], len(EMOTIONS)), np.nan, dtype=np.float32)
    for j, name in enumerate(labels):
        if name not in EMOTIONS:
            raise ConfigError(f"classifier label {name!r} | expected one of {', '.join(EMOTIONS)}")
        out[:, EMOTIONS.index(name)] = probs[:, j]
    return out


def argmax_known(probs: np.ndarray) -> np.ndarray:
    """Index of the most probable class per row, ignoring NaN columns (classes the model lacks).

    Args:
        probs: (M, 8) float probabilities in EMOTIONS order, NaN where the model has no class.

    Returns:
        (M,) int64 column indices into EMOTIONS (0 for a row that is all NaN).
    """
    return np.where(np.isnan(probs), -np.inf, probs).argmax(axis=1)
