"""The FER+ label order every result is written in, and mapping other label orders into it.

The order (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt) is the one of
FER+ (Barsoum et al. 2016, arXiv 1608.01041) and of the ONNX model zoo's emotion_ferplus model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ferbatch.errors import ConfigError

__all__ = ["EMOTIONS", "to_ferplus_order"]

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
