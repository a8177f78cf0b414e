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


# a landmark detector of another family (SCRFD), as an entry would add it
_SCRFD = """
[models.scrfd-test]
kind = "detector"
family = "scrfd"
{decoder}file = "detectors/scrfd.onnx"
sha256 = "00"
input = {{ name = "input.1", layout = "NCHW", width = 640, height = 640, color = "RGB" }}
outputs = {{ strides = "8,16,32" }}
"""


def _registry_with(tmp_path, text: str):
    path = tmp_path / "models.toml"
    path.write_text(load_registry().path.read_text() + text)
    return path


@pytest.mark.parametrize("decoder", ['decoder = "scrfd"\n', 'decoder = "YuNet"\n', "", "decoder = 3\n"])
def test_a_detector_without_a_known_decoder_is_refused(tmp_path, decoder):
    """An entry whose ``decoder`` is unknown or missing is refused at load, naming the entry, the
    value and the known decoders: a landmark detector that is not YuNet is never decoded as YuNet."""
    path = _registry_with(tmp_path, _SCRFD.format(decoder=decoder))
    with pytest.raises(ConfigError) as e:
        load_registry(path)
    value = decoder.partition("= ")[2].strip() or "None"
    msg = str(e.value)
    assert "'scrfd-test'" in msg and "known decoders: ultraface, yunet" in msg and value.strip('"') in msg, msg
    assert "\n" not in msg


def test_the_decoder_comes_from_its_key_not_the_family(tmp_path):
    """A YuNet entry without its ``decoder`` key is refused (the family alone routes nothing); a
    classifier entry with one is refused too."""
    text = load_registry().path.read_text()
    yunet = text.replace('family = "yunet"\ndecoder = "yunet"\n', 'family = "yunet"\n')
    (tmp_path / "a.toml").write_text(yunet)
    with pytest.raises(ConfigError, match=r"detector entry 'yunet-2023mar' has decoder None; known decoders: ultraface, yunet"):
        load_registry(tmp_path / "a.toml")
    cls = text.replace('family = "gray-crop"\n', 'family = "gray-crop"\ndecoder = "yunet"\n', 1)
    (tmp_path / "b.toml").write_text(cls)
    with pytest.raises(ConfigError, match=r"entry 'ferbatch-ferplus-cnn-v1' is a classifier: decoder 'yunet' is for detectors only"):
        load_registry(tmp_path / "b.toml")


def test_each_detector_entry_names_its_decoder_type():
    from ferbatch.vision.decoders import DECODERS, UltraFaceDecoder, YuNetDecoder

    reg = load_registry()
    dets = {n: s for n, s in reg.models.items() if s.kind == "detector"}
    assert dets and all(type(s.decoder) is DECODERS[s.decoder.name] for s in dets.values() if s.decoder)
    assert isinstance(reg.get("yunet-frame").decoder, YuNetDecoder) and reg.get("yunet-frame").gives_landmarks
    assert isinstance(reg.get("ultraface-rfb-320").decoder, UltraFaceDecoder) and not reg.get("ultraface-rfb-320").letterbox
    assert all(s.decoder is None for s in reg.models.values() if s.kind == "classifier")


def test_a_landmark_detector_of_another_family_runs_its_own_decoder():
    """The Detector routes by the spec's decoder type, not by ``gives_landmarks``: a landmark
    detector with its own decoder (a stand-in for SCRFD, outputs that YuNet's decoding could not
    read) gets its boxes and landmarks from that decoder, through the NumPy path (no in-graph form).

    Mutation: ``Detector._run`` choosing YuNet's decoding when ``gives_landmarks`` (as before the
    decoders were types) fails here with KeyError 'cls_8'."""
    import dataclasses

    import numpy as np

    from ferbatch.vision.detect import Detector

    calls = []

    @dataclasses.dataclass(frozen=True)
    class ScrfdLike:
        name: str = "scrfd"
        gives_landmarks: bool = True
        letterbox: bool = False
        nms_in_graph: bool = False

        def decode(self, out, spec, score_threshold, iou_threshold, k):
            calls.append((score_threshold, k))
            n = len(out["score_8"])
            db = np.zeros((n, k, 4), np.float32)
            ds = np.zeros((n, k), np.float32)
            dk = np.zeros((n, k, 5, 2), np.float32)
            db[:, 0] = [10, 20, 110, 140]  # input pixels
            ds[:, 0] = 0.9
            dk[:, 0] = np.arange(10, dtype=np.float32).reshape(5, 2)
            return db, ds, dk

    class Runner:
        name, max_batch, input_names, output_names, thread_safe = "fake", 0, ("input.1",), ("score_8",), True

        def infer(self, feed):
            return {"score_8": np.zeros((len(feed["input.1"]), 100, 1), np.float32)}

    spec = dataclasses.replace(load_registry().get("yunet-2023mar"), name="scrfd-test", family="scrfd", decoder=ScrfdLike())
    spec = dataclasses.replace(spec, input=dataclasses.replace(spec.input, name="input.1"))
    det = Detector(Runner(), spec, in_graph_nms=True, max_faces=8)
    assert not det.in_graph_nms  # no in-graph form: the NumPy path, whatever was asked
    got = det.detect([np.zeros((1280, 1280, 3), np.uint8)] * 2)  # 640x640 input: frame pixels = 2 x input pixels
    assert calls == [(spec.score_threshold, 8)]
    np.testing.assert_array_equal(got.frame_pos, [0, 1])
    np.testing.assert_allclose(got.boxes, [[20, 40, 220, 280]] * 2)
    assert got.landmarks is not None and got.landmarks.shape == (2, 5, 2)
    np.testing.assert_allclose(got.landmarks[0], 2 * np.arange(10, dtype=np.float32).reshape(5, 2))
