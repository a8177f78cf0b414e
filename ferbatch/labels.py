"""The FER+ label order every result is written in, and mapping other label orders into it.

The order (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt) is the one of
FER+ (Barsoum et al. 2016, arXiv 1608.01041) and of the ONNX model zoo's emotion_ferplus model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ferbatch.errors import ConfigError

__all__ = [
    "EMOTIONS",
    "EMOTION_COLORS",
    "EMOTION_ALIASES",
    "EMOTION_RULE",
    "emotion_of",
    "to_ferplus_order",
    "argmax_known",
    "weighted_emotion",
]

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


# The one aggregate of many rows' expressions (a track's, a video's, a time bin's): the time-weighted
# mean of the calibrated probabilities, each row weighted by the video time its frame stands for
# (``frames.span_ms``: a sampled or variable-frame-rate video is weighted by time, not by rows), and its
# argmax. Calibrated probabilities (temperature-scaled, Guo et al. 2017) make the mean an estimate of
# how likely each expression is over the span; a majority of per-frame labels would drop every
# frame's second choice. The SQL form is ferbatch.dataset.api.emotion_sql; both are tested equal.
EMOTION_RULE = "time-weighted mean of the calibrated probabilities (weights: frames.span_ms), then its argmax"


def weighted_emotion(probs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, str | None]:
    """:data:`EMOTION_RULE` over rows.

    Args:
        probs: (M, 8) float32 in FER+ order (NaN = a class the model lacks).
        weights: (M,) non-negative weights (milliseconds of video); all zero = equal weights.

    Returns:
        ((8,) float64 weighted means, NaN for classes without values; the emotion, None for no rows).
    """
    if len(probs) == 0:
        return np.full(len(EMOTIONS), np.nan), None
    w = np.asarray(weights, np.float64)
    if not np.any(w > 0):
        w = np.ones(len(probs))
    p = np.asarray(probs, np.float64)
    ok = ~np.isnan(p)
    tot = (w[:, None] * ok).sum(0)
    mean = np.where(tot > 0, (np.nan_to_num(p) * w[:, None]).sum(0) / np.where(tot > 0, tot, 1), np.nan)
    if np.all(np.isnan(mean)):
        return mean, None
    return mean, EMOTIONS[int(argmax_known(mean[None, :].astype(np.float32))[0])]
