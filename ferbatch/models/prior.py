"""The class prior of a classifier's decision: post-hoc logit adjustment as a run setting.

A classifier trained by cross-entropy learns ``p(y | x)`` under its training label prior ``pi`` (FER+:
37 % neutral). Subtracting ``tau * log(pi)`` from the logits (Menon et al. 2021, "Long-tail learning
via logit adjustment") moves the decision towards a uniform prior (tau = 1: balanced error); faces
from another population (posed expressions, other cameras) do not share FER+'s neutral-heavy mix.

Settings (``ferbatch run --prior``, registry key ``prior``):
- ``as-trained``: the network's own logits (tau 0), undoing any adjustment baked into the graph;
- ``balanced``: ``tau = prior_tau`` (registry), chosen by the rule of ``scripts/eval_protocol.py``;
- ``graph``: the graph's outputs unchanged (bundled v2-v4 bake tau 0.25-0.5 in); what datasets
  written before this setting existed hold.

For a graph that ends with ``(z - graph_tau * log(pi)) / graph_temperature`` the bias added to its
output is ``(graph_tau - tau) / graph_temperature * log(pi)``; the classifier then divides by the
registry ``temperature`` and takes the softmax (:class:`ferbatch.vision.classify.Classifier`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ferbatch.errors import ConfigError
from ferbatch.specs import ModelSpec

__all__ = ["PRIORS", "prior_bias", "configure_classifier", "check_prior_fields"]

PRIORS = ("as-trained", "balanced", "graph")


def check_prior_fields(path: Path, spec: ModelSpec) -> None:
    """Check a registry entry's prior keys.

    Raises:
        ConfigError: an unknown ``prior``; a negative ``prior_tau``; a non-positive graph temperature;
            a ``train_prior`` that is not one positive number per label; or a setting other than
            ``graph`` (or a graph adjustment) without a ``train_prior``.
    """
    where = f"model registry {path} | entry {spec.name!r}"
    if spec.prior not in PRIORS:
        raise ConfigError(f"{where}: prior {spec.prior!r}; expected one of {', '.join(PRIORS)}")
    if spec.prior_tau < 0 or not spec.graph_temperature > 0:
        raise ConfigError(f"{where}: prior_tau must be >= 0 and graph_adjustment.temperature > 0")
    if spec.train_prior and (len(spec.train_prior) != len(spec.labels) or min(spec.train_prior) <= 0):
        raise ConfigError(f"{where}: train_prior must hold {len(spec.labels)} positive numbers (one per label), got {spec.train_prior}")
    if not spec.train_prior and (spec.prior != "graph" or spec.graph_tau != 0):
        raise ConfigError(f"{where}: prior {spec.prior!r} or a graph_adjustment needs train_prior (the training label prior)")


def prior_bias(spec: ModelSpec, prior: str) -> np.ndarray:
    """What to add to the graph's logits for the setting ``prior`` (module docstring).

    Args:
        spec: a classifier entry (``train_prior``, ``graph_tau``, ``graph_temperature``, ``prior_tau``).
        prior: "as-trained", "balanced" or "graph".

    Returns:
        (K,) float32 in ``spec.labels`` order (K = number of labels); zeros for ``graph``.

    Raises:
        ConfigError: an unknown setting, or a setting other than ``graph`` for a classifier whose
            entry gives no ``train_prior``.
    """
    if prior not in PRIORS:
        raise ConfigError(f"--prior | received {prior!r}; expected one of {', '.join(PRIORS)}")
    if prior == "graph":
        return np.zeros(len(spec.labels), np.float32)
    if not spec.train_prior:
        raise ConfigError(f"--prior {prior} | classifier {spec.name} has no training label prior in the registry; use --prior graph")
    tau = 0.0 if prior == "as-trained" else spec.prior_tau
    return ((spec.graph_tau - tau) / spec.graph_temperature * np.log(np.asarray(spec.train_prior, np.float64))).astype(np.float32)


def configure_classifier(spec: ModelSpec, prior: str | None = None, align: bool | None = None) -> ModelSpec:
    """``spec`` with a run's prior and alignment settings applied.

    Args:
        spec: a classifier entry.
        prior: a :data:`PRIORS` setting; None = the entry's ``prior``. Classifiers that output
            probabilities (no logits) only take ``graph``.
        align: True = the FER48 aligned crop (:mod:`ferbatch.vision.align`) for a ``square`` crop;
            None = the entry's ``crop.align`` (false when absent). ``align5`` classifiers align
            with their own template whatever this says.

    Returns:
        A copy with ``logit_bias`` set, ``prior`` set to the setting in force, and ``crop.mode``
        "aligned" where alignment applies.

    Raises:
        ConfigError: see :func:`prior_bias`; a setting other than ``graph`` for a probability output.
    """
    prior = prior or spec.prior
    if spec.output_kind != "logits" and prior != "graph":
        raise ConfigError(f"--prior {prior} | classifier {spec.name} outputs probabilities, not logits; use --prior graph")
    bias = prior_bias(spec, prior) if spec.output_kind == "logits" else np.zeros(len(spec.labels), np.float32)
    crop = dict(spec.crop)
    on = bool(crop.get("align", False)) if align is None else align
    if on and crop.get("mode", "square") == "square":
        crop["mode"] = "aligned"
    return replace(spec, prior=prior, logit_bias=tuple(float(b) for b in bias), crop=crop)
