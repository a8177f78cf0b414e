"""The model registry (``ferbatch/models/registry.toml``, package data): model specs, file
resolution and sha256 checks.

Resolution order for a model's file (first hit wins, every hit is sha256-checked):
0. for ``bundled = true`` entries (ferbatch's own models, committed beside the registry): that file;
1. an explicit path given by the caller (``--detector-file`` / ``--classifier-file``);
2. the mirror directory ``$FERBATCH_MODEL_MIRROR`` (``<mirror>/<file>``);
3. the user cache ``$FERBATCH_CACHE``, ``$XDG_CACHE_HOME/ferbatch`` or ``~/.cache/ferbatch`` (``<cache>/models/<file>``);
4. a download from the entry's upstream ``url`` into the user cache, when the network allows.

A file whose sha256 differs from the registry's is refused (never silently replaced).
A detector entry names its post-processing (``decoder``, a key of
:data:`ferbatch.vision.decoders.DECODERS`); this is the one place that choice is made, and an entry
without a known decoder is refused at load.
This module does not run models.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ferbatch.atomic import atomic_target
from ferbatch.errors import ConfigError, ModelError
from ferbatch.models.prior import check_prior_fields
from ferbatch.specs import DetectorDecoder, InputSpec, ModelSpec
from ferbatch.vision.decoders import DECODERS

__all__ = [
    "InputSpec",  # re-exported from ferbatch.specs
    "ModelSpec",
    "Registry",
    "load_registry",
    "resolve_model_file",
    "sha256_file",
    "cache_dir",
    "MIRROR_ENV",
]

MIRROR_ENV = "FERBATCH_MODEL_MIRROR"
CACHE_ENV = "FERBATCH_CACHE"
REGISTRY_ENV = "FERBATCH_REGISTRY"
# package data (importlib.resources): a wheel carries the registry and the bundled weights; pip
# installs wheels unpacked, so the traversable is a real path that ONNX Runtime can open
DEFAULT_REGISTRY = Path(str(importlib.resources.files("ferbatch.models").joinpath("registry.toml")))


@dataclass(frozen=True)
class Registry:
    """All model specs of one registry file plus its default detector and classifier names."""

    path: Path
    models: dict[str, ModelSpec]
    default_detector: str
    default_classifier: str
    default_landmark_detector: str = ""  # the detector that aligns faces for align5 classifiers

    def get(self, name: str, kind: str | None = None) -> ModelSpec:
        """The spec called ``name``.

        Raises:
            ConfigError: no such model, or it is not of ``kind``.
        """
        spec = self.models.get(name)
        if spec is None:
            known = ", ".join(sorted(n for n, s in self.models.items() if kind is None or s.kind == kind))
            raise ConfigError(f"model {name!r} | not in the registry {self.path}; known: {known}")
        if kind is not None and spec.kind != kind:
            raise ConfigError(f"model {name!r} | is a {spec.kind}; expected a {kind}")
        return spec


def load_registry(path: str | os.PathLike[str] | None = None) -> Registry:
    """Read a registry TOML file (default: ``$FERBATCH_REGISTRY`` or the packaged registry.toml).

    Raises:
        ConfigError: the file is missing or not TOML, an entry lacks a required key, a detector
            entry's ``decoder`` is missing or unknown (the message names the entry, the value and
            the known decoders), or a classifier entry sets one.
    """
    p = Path(path or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"model registry {p} | file not found") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"model registry {p} | not valid TOML: {e}") from e
    models = {}
    for name, raw in data.get("models", {}).items():
        try:
            inp = InputSpec(**raw["input"])
            models[name] = ModelSpec(
                name=name,
                kind=raw["kind"],
                family=raw["family"],
                file=raw["file"],
                sha256=raw["sha256"].lower(),
                input=inp,
                outputs=dict(raw.get("outputs", {})),
                license=raw.get("license", ""),
                source=raw.get("source", ""),
                url=raw.get("url"),
                labels=tuple(raw.get("labels", ())),
                output_kind=raw.get("output_kind", "probs"),
                temperature=float(raw.get("temperature", 1.0)),
                crop=dict(raw.get("crop", {})),
                train_prior=tuple(float(v) for v in raw.get("train_prior", ())),
                graph_tau=float(raw.get("graph_adjustment", {}).get("tau", 0.0)),
                graph_temperature=float(raw.get("graph_adjustment", {}).get("temperature", 1.0)),
                prior=str(raw.get("prior", "graph")),
                prior_tau=float(raw.get("prior_tau", 0.0)),
                requires_landmarks=bool(raw.get("requires_landmarks", False)),
                boxes_decoded=bool(raw.get("boxes_decoded", True)),
                score_threshold=float(raw.get("score_threshold", 0.7)),
                iou_threshold=float(raw.get("iou_threshold", 0.3)),
                bundled_path=str(p.parent / raw["file"]) if raw.get("bundled") else None,
                input_max_side=int(raw.get("input_max_side", 0)),
                decoder=_decoder(p, name, raw),
            )
        except (KeyError, TypeError) as e:
            raise ConfigError(f"model registry {p} | entry {name!r} is incomplete: {e}") from e
        check_prior_fields(p, models[name])
        if not models[name].temperature > 0:
            raise ConfigError(f"model registry {p} | entry {name!r}: temperature must be > 0, got {models[name].temperature}")
    defaults = data.get("defaults", {})
    return Registry(p, models, defaults.get("detector", ""), defaults.get("classifier", ""), defaults.get("landmark_detector", ""))


def _decoder(path: Path, name: str, raw: dict) -> DetectorDecoder | None:
    """The decoder of entry ``name``: a detector's ``decoder`` key looked up in :data:`DECODERS`.

    Raises:
        ConfigError: a detector without a known decoder, or a classifier with one.
    """
    value = raw.get("decoder")
    if raw.get("kind") != "detector":
        if value is not None:
            raise ConfigError(f"model registry {path} | entry {name!r} is a {raw.get('kind')}: decoder {value!r} is for detectors only")
        return None
    cls = DECODERS.get(value) if isinstance(value, str) else None
    if cls is None:
        raise ConfigError(
            f"model registry {path} | detector entry {name!r} has decoder {value!r}; known decoders: {', '.join(sorted(DECODERS))}"
        )
    return cls()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    """The user cache (created on demand by its writers): ``$FERBATCH_CACHE``, else
    ``$XDG_CACHE_HOME/ferbatch`` (an absolute ``XDG_CACHE_HOME`` only, as the XDG spec says),
    else ``~/.cache/ferbatch``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "ferbatch"


def _check(spec: ModelSpec, path: Path) -> Path:
    found = sha256_file(path)
    if found != spec.sha256:
        raise ModelError(
            f"model {spec.name} file {path} | sha256 mismatch: expected {spec.sha256}, found {found}; "
            "refusing to run with different weights"
        )
    return path


def resolve_model_file(spec: ModelSpec, explicit: str | os.PathLike[str] | None = None, *, allow_download: bool = True) -> Path:
    """Find the file for ``spec`` (explicit path, mirror, cache, download) and verify its sha256.

    Args:
        spec: the registry entry.
        explicit: a path the user gave; used alone when set.
        allow_download: try ``spec.url`` when the file is nowhere local.

    Returns:
        Path of a file whose sha256 equals ``spec.sha256``.

    Raises:
        ModelError: not found anywhere (the message names the file, the mirror variable and the
            URL), download failed, or the sha256 differs.
    """
    if explicit is None and spec.bundled_path:
        p = Path(spec.bundled_path)
        if not p.is_file():
            raise ModelError(f"model {spec.name} | bundled file {p} is missing from this installation")
        return _check(spec, p)
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise ModelError(f"model {spec.name} | file {p} does not exist")
        return _check(spec, p)
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        p = Path(mirror) / spec.file
        if p.is_file():
            return _check(spec, p)
    cached = cache_dir() / "models" / spec.file
    if cached.is_file():
        return _check(spec, cached)
    where = f"${MIRROR_ENV}={mirror!r}" if mirror else f"${MIRROR_ENV} (unset)"
    if not (allow_download and spec.url):
        raise ModelError(
            f"model {spec.name} | file {spec.file} not found in {where} or {cached.parent}; "
            + (f"download it from {spec.url}" if spec.url else "it has no public URL: put it in the mirror")
        )
    try:
        with atomic_target(cached, suffix=".part", wrap_errors=False) as tmp:
            with open(tmp, "wb") as out, urllib.request.urlopen(spec.url, timeout=30) as r:
                while block := r.read(1 << 20):
                    out.write(block)
            _check(spec, tmp)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise ModelError(
            f"model {spec.name} | file {spec.file} not found in {where} or {cached.parent}, "
            f"and downloading {spec.url} failed ({e}); set {MIRROR_ENV} to a folder holding {spec.file}"
        ) from e
    return cached
