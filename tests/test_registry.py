"""Model registry: resolution through the mirror, refusal of wrong hashes, clear errors."""

import shutil

import pytest

from ferbatch.errors import ConfigError, ModelError
from ferbatch.models.registry import MIRROR_ENV, load_registry, resolve_model_file, sha256_file


def test_defaults_resolve_from_the_mirror():
    reg = load_registry()
    for name in (reg.default_detector, reg.default_classifier):
        spec = reg.get(name)
        assert sha256_file(resolve_model_file(spec, allow_download=False)) == spec.sha256


def test_wrong_sha256_is_refused_with_both_hashes(tmp_path):
    spec = load_registry().get("ultraface-rfb-320")
    bad = tmp_path / "version-RFB-320.onnx"
    shutil.copy(resolve_model_file(spec), bad)
    data = bytearray(bad.read_bytes())
    data[-100] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError) as e:
        resolve_model_file(spec, bad)
    assert spec.sha256 in str(e.value) and sha256_file(bad) in str(e.value)


def test_missing_file_names_the_mirror_and_the_url(monkeypatch, tmp_path):
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path))
    spec = load_registry().get("ultraface-rfb-320")
    with pytest.raises(ModelError) as e:
        resolve_model_file(spec, allow_download=False)
    assert MIRROR_ENV in str(e.value) and spec.url in str(e.value) and spec.file in str(e.value)


def test_unknown_or_wrong_kind_model():
    reg = load_registry()
    with pytest.raises(ConfigError, match="not in the registry"):
        reg.get("no-such-model")
    with pytest.raises(ConfigError, match="expected a classifier"):
        reg.get("ultraface-rfb-320", "classifier")


def test_corrupt_onnx_is_refused_with_the_parsers_message(tmp_path, monkeypatch):
    from ferbatch.config import JobConfig
    from ferbatch.models.load import load_models

    reg_text = load_registry().path.read_text().replace('file = "detectors/version-RFB-320.onnx"', 'file = "detectors/broken.onnx"')
    good = resolve_model_file(load_registry().get("ultraface-rfb-320"))
    (tmp_path / "detectors").mkdir()
    broken = tmp_path / "detectors/broken.onnx"
    broken.write_bytes(good.read_bytes()[:5000] + b"\x00garbage" * 100)
    reg_text = reg_text.replace(load_registry().get("ultraface-rfb-320").sha256, sha256_file(broken))
    (tmp_path / "models.toml").write_text(reg_text)
    monkeypatch.setenv("FERBATCH_REGISTRY", str(tmp_path / "models.toml"))
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path))
    monkeypatch.setenv("FERBATCH_CACHE", str(tmp_path / "cache"))
    # the classifier comes from the real mirror through an explicit path
    from conftest import SHARED

    cls_file = SHARED / "models/classifiers/fer2013_mini_XCEPTION_102-0.66_nchw.onnx"
    with pytest.raises(ModelError, match="not a valid ONNX model") as e:
        load_models(JobConfig(detector="ultraface-rfb-320", classifier="mini-xception-fer2013", classifier_file=str(cls_file)), threads=1)
    assert "broken.onnx" in str(e.value)
