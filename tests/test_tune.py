"""``ferbatch tune``: a tiny real Ray Tune search (2 trials, 1 epoch) on a FER+ subset."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import DATA

pytest.importorskip("torch")
pytest.importorskip("ray.tune")

FERPLUS_VAL = DATA / "ferplus/FER2013Valid"


@pytest.mark.ray
def test_tune_two_trials_write_results_and_best_config(tmp_path, ray_session):
    from typer.testing import CliRunner

    from ferbatch.cli import app

    out = tmp_path / "tune"
    args = ["tune", "--data", str(FERPLUS_VAL), "--out", str(out), "--samples", "2", "--epochs", "1", "--limit", "300"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 and all(not x["error"] for x in rows)
    assert len({(x["lr"], x["aug"]) for x in rows}) == 2  # two different configurations
    accs = [float(x["best_val_acc1"]) for x in rows]
    assert accs == sorted(accs, reverse=True) and all(0 <= a <= 1 for a in accs)
    best = json.loads((out / "best_config.json").read_text())
    assert set(best["config"]) == {"lr", "width", "aug", "label_mode", "class_weight"}
    assert best["best_val_acc1"] == accs[0] and best["epochs"] == 1
    assert "best val acc@1" in r.output


def test_class_weights():
    import numpy as np

    from ferbatch.training.tune import class_weights

    w = class_weights(np.array([0, 0, 0, 1]), 1.0)
    assert w[0] < w[1] and w[2:].sum() == 0 and abs(w[:2].mean() - 1) < 1e-6
    assert np.allclose(class_weights(np.array([0, 0, 1]), 0.0)[:2], 1.0)


def test_tune_refuses_bad_settings(tmp_path):
    from ferbatch.errors import ConfigError
    from ferbatch.training.tune import TuneConfig, tune

    with pytest.raises(ConfigError, match="--grace"):
        tune(TuneConfig(data=str(FERPLUS_VAL), out=str(tmp_path), epochs=1, grace=2))
