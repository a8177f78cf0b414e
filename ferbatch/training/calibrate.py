"""Calibration of a classifier's probabilities (NumPy only).

- ``fit_temperature``: temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural
  Networks", ICML): one scalar T > 0 minimising the negative log-likelihood of
  ``softmax(logits / T)`` on held-out labels; found by golden-section search on log T.
- ``ece``: expected calibration error with equal-width confidence bins (Naeini et al. 2015; the
  15-bin form of Guo et al. 2017): sum over bins of |accuracy - mean confidence| x bin share.
- ``adjust_logits``: post-hoc logit adjustment (Menon et al. 2021, arXiv 2007.07314): logits
  minus ``tau * log(prior)`` trade accuracy on the training prior for balanced per-class recall.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["fit_temperature", "ece", "nll", "adjust_logits"]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of ``labels`` (N,) int under ``softmax(logits / T)``,
    logits (N, C) float."""
    lp = _log_softmax(np.asarray(logits, np.float64) / temperature)
    return float(-lp[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """The temperature T in [lo, hi] minimising ``nll(logits, labels, T)`` (Guo et al. 2017).

    Args:
        logits: (N, C) float logits; labels: (N,) int64 true classes.

    Returns:
        T (float, unitless); probabilities are ``softmax(logits / T)``.

    Raises:
        ValueError: empty input or mismatched lengths.
    """
    if len(logits) == 0 or len(logits) != len(labels):
        raise ValueError(f"fit_temperature | {len(logits)} logit rows for {len(labels)} labels")
    a, b = math.log(lo), math.log(hi)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(logits, labels, math.exp(c)), nll(logits, labels, math.exp(d))
    for _ in range(60):  # the NLL is convex in 1/T, unimodal in log T; 60 steps narrow it by 1e-12
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(logits, labels, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(logits, labels, math.exp(d))
    return math.exp((a + b) / 2)


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence, ``bins`` equal-width bins over (0, 1].

    Args:
        probs: (N, C) float probabilities (rows sum to 1); labels: (N,) int true classes.

    Returns:
        ECE in 0..1 (Guo et al. 2017, eq. 3).
    """
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += abs(float(correct[m].mean()) - float(conf[m].mean())) * m.mean()
    return float(total)


def adjust_logits(logits: np.ndarray, prior: np.ndarray, tau: float) -> np.ndarray:
    """``logits - tau * log(prior)``: (N, C) float, prior (C,) class frequencies (> 0)."""
    return logits - tau * np.log(np.maximum(np.asarray(prior, np.float64), 1e-12))
