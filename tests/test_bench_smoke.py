"""The benchmark runs end to end with tiny settings (no timing is asserted: speed is measured, not tested)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bench_smoke_prints_every_column():
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts/bench.py"), "--smoke"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ,
        timeout=300,
    ).stdout
    res = json.loads(out.strip().splitlines()[-1])
    r = res["clips"]["360p"]
    from ferbatch.models.registry import load_registry

    reg = load_registry()
    full_frames = reg.get(reg.default_detector).letterbox  # YuNet takes full frames: resizing is inside detect
    for stage in ("decode", "detect", "crop", "classify", "write") + (() if full_frames else ("resize",)):
        assert r["stage_ms"][stage] > 0, stage
    for key in ("bound_fps", "seed_whole_fps", "ferbatch_whole_fps", "speedup_vs_seed", "whole_of_bound"):
        assert r[key] > 0, key
    assert r["frames"] == 96 and res["one_frame_job_s"] > 0
