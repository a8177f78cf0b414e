"""eval metrics against scikit-learn; a one-epoch training run on real FER+ images exports a
working ONNX model."""

import numpy as np
import pytest
from conftest import DATA

from ferbatch.labels import EMOTIONS
from ferbatch.training.evaluate import metrics


def test_metrics_equal_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 8, 500)
    probs = rng.dirichlet(np.ones(8), 500).astype(np.float32)
    probs[np.arange(500)[:300], labels[:300]] += 1.0  # better than chance
    probs[:, 7] = np.nan  # a 7-class model: contempt is never predicted
    m = metrics(probs, labels)
    pred = np.nanargmax(probs, 1)
    assert m["acc1"] == pytest.approx(sk.accuracy_score(labels, pred))
    p, r, f, s = sk.precision_recall_fscore_support(labels, pred, labels=range(8), zero_division=0)
    for i, e in enumerate(EMOTIONS):
        assert m["per_class"][e]["precision"] == pytest.approx(p[i])
        assert m["per_class"][e]["recall"] == pytest.approx(r[i])
        assert m["per_class"][e]["f1"] == pytest.approx(f[i])
        assert m["per_class"][e]["support"] == s[i]
    assert m["macro"]["f1"] == pytest.approx(sk.f1_score(labels, pred, average="macro", zero_division=0))
    assert m["macro"]["precision"] == pytest.approx(sk.precision_score(labels, pred, average="macro", zero_division=0))
    assert m["acc5"] == pytest.approx(sk.top_k_accuracy_score(labels, np.nan_to_num(probs, nan=-1), k=5, labels=range(8)))
    assert np.array_equal(np.array(m["confusion"]), sk.confusion_matrix(labels, pred, labels=range(8)))
    cm = sk.confusion_matrix(labels, pred, labels=range(8))
    tn = cm.sum() - cm.sum(0) - cm.sum(1) + np.diag(cm)
    fp = cm.sum(0) - np.diag(cm)
    for i, e in enumerate(EMOTIONS):
        assert m["per_class"][e]["specificity"] == pytest.approx(tn[i] / (tn[i] + fp[i]))


def test_eval_command_on_the_ferplus_sample(tmp_path):
    # the 80-image sample in the ImageFolder layout (one folder per majority label)
    import csv
    import shutil

    from typer.testing import CliRunner

    from ferbatch.cli import app

    with open(DATA / "fer_sample/labels.csv") as f:
        sample = list(csv.DictReader(f))
    for row in sample:
        d = tmp_path / "faces" / row["ferplus_majority"]
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(DATA / "fer_sample" / row["image"], d / row["image"])
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "--model",
            "mini-xception-fer2013",
            "--data",
            str(tmp_path / "faces"),
            "--out",
            str(tmp_path / "eval"),
            "--format",
            "json",
        ],
    )
    assert res.exit_code == 0, res.output
    import json

    m = json.loads(res.output.strip().splitlines()[-1])
    assert m["n"] == 80 and m["classes_missing"] == ["contempt"] and 0.4 < m["acc1"] < 0.9
    assert (tmp_path / "eval/confusion.png").stat().st_size > 10_000
    assert sum(map(sum, m["confusion"])) == 80


def test_one_epoch_training_exports_a_working_onnx(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import onnxruntime as ort

    from ferbatch.training.train import TrainConfig, prepare_train_folder, train

    monkeypatch.setenv("FERBATCH_CACHE", str(tmp_path / "cache"))
    folder = prepare_train_folder(DATA / "ferplus/FER2013Train.tar.gz")
    s = train(TrainConfig(data=str(folder), out=str(tmp_path / "m"), epochs=1, limit=1500, threads=2), log=lambda m: None)
    assert s["epochs_run"] == 1 and s["onnx_max_abs_diff"] < 1e-4
    sess = ort.InferenceSession(str(tmp_path / "m/model.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in sess.get_inputs()] == [("input", ["N", 1, 48, 48])]
    assert [(o.name, o.shape) for o in sess.get_outputs()] == [("logits", ["N", 8])]
    out = sess.run(None, {"input": np.zeros((5, 1, 48, 48), np.float32)})[0]
    assert out.shape == (5, 8) and np.isfinite(out).all()


def test_committed_model_reaches_its_recorded_validation_accuracy():
    import json
    from pathlib import Path

    from ferbatch.training.evaluate import evaluate

    recorded = json.loads((Path(__file__).resolve().parent.parent / "ferbatch/models/bundled/train-v1/train_summary.json").read_text())
    res = evaluate("ferbatch-ferplus-cnn-v1", DATA / "ferplus/FER2013Valid")
    assert res["n"] == 3555 and res["classes_missing"] == []
    assert abs(res["acc1"] - recorded["best_val_acc1"]) < 1e-3  # the training loop's own evaluation, reproduced
