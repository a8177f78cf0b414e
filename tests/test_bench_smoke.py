"""The benchmark runs end to end with tiny settings (no timing is asserted: speed is measured, not tested)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import SINGLE_FACE

REPO = Path(__file__).resolve().parent.parent


def test_bench_smoke_prints_every_column():
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts/bench.py"), str(SINGLE_FACE), "--smoke"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ,
        timeout=300,
    ).stdout
    res = json.loads(out.strip().splitlines()[-1])
    for key in (
        "decode_pyav_fps",
        "decode_opencv_fps",
        "detect_fps_1thread",
        "classify_faces_per_s_1thread",
        "seed_loop_fps",
        "ferbatch_inprocess_fps",
        "bound_fps",
        "ratio_vs_seed",
        "ratio_vs_bound",
    ):
        assert res[key] > 0, key
    assert res["frames"] == 72
