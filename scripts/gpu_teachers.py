"""Train an ensemble of classifier teachers at once on one GPU, and bring back their logits (#33 item 5, #31 item 6).

    python3 scripts/gpu_teachers.py --data /tmp/site/shared/data/ferplus/FER2013Train.tar.gz --out $OUT --teachers 4

Each teacher is ``ferbatch train --device cuda --save-logits --val selection --arch res --width 64 --augment pipeline
--epochs 30 --batch 256 --lr 3e-3``: the recipe of v4's teacher A (``docs/gpu_teacher_res64_h200.json``: 0.842 on
FER2013Valid, 108 s on an H200), chosen on the protocol's selection split instead of FER2013Valid. Teachers
differ by seed, and every third one samples classes by the square root of their frequency (v4's teacher B). They
run concurrently: a 48-px network leaves an H200 mostly idle, so K teachers take little longer than one. Each gets
``--time-budget`` seconds of training (default 300); teachers still running at ``--deadline`` (default the budget
plus 150 s, for the epoch under way, prediction and export) are killed, so the call ends inside a device call's
10 minutes with the time the payload and start-up take. The two files are rewritten as each teacher finishes.

Writes two files into ``--out`` (a device call returns at most 8):

- ``teachers.npz``: each teacher's ``train_logits.npy``, (N, 8) float32 over every image of the training folder in
  load order, keyed by name: ``ferbatch train --teacher teachers.npz`` distils from their mean;
- ``teachers.json``: each teacher's command and summary (selection acc@1 and macro-F1, best epoch, seconds),
  without the per-epoch history.

``--device cpu --limit 300 --epochs 1 --width 4`` is the smoke run the tests make.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VARIANTS = (  # name, extra ferbatch train options
    ("seed0", ["--seed", "0"]),
    ("seed1", ["--seed", "1"]),
    ("sqrt0", ["--seed", "0", "--balance", "sqrt_sampling"]),
    ("seed2", ["--seed", "2"]),
    ("seed3", ["--seed", "3"]),
    ("sqrt1", ["--seed", "1", "--balance", "sqrt_sampling"]),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="FER2013Train.tar.gz or its extracted folder")
    ap.add_argument("--out", type=Path, required=True, help="folder for teachers.npz and teachers.json")
    ap.add_argument("--teachers", type=int, default=4, help=f"how many (1-{len(VARIANTS)})")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--limit", type=int, default=None, help="first N training images (smoke runs)")
    ap.add_argument("--threads", type=int, default=3, help="torch threads per teacher")
    ap.add_argument("--time-budget", type=float, default=300.0, help="seconds per teacher (ferbatch train --time-budget)")
    ap.add_argument(
        "--deadline",
        type=float,
        default=0.0,
        help="seconds after which teachers still running are killed (0: --time-budget + 150, for the last epoch, prediction and export)",
    )
    ap.add_argument("--work", type=Path, default=None, help="the teachers' run folders (default: a temporary folder)")
    a = ap.parse_args()
    if not 1 <= a.teachers <= len(VARIANTS):
        ap.error(f"--teachers {a.teachers}: 1 to {len(VARIANTS)}")
    from ferbatch.training.train import prepare_train_folder

    folder = prepare_train_folder(a.data)  # extracted once, before K processes would race to do it
    work = a.work or Path(tempfile.mkdtemp(prefix="ferbatch_teachers_"))
    work.mkdir(parents=True, exist_ok=True)
    a.out.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "ferbatch", "train", "--data", str(folder), "--val", "selection", "--device", a.device]
    base += ["--save-logits", "--arch", "res", "--width", str(a.width), "--augment", "pipeline", "--epochs", str(a.epochs)]
    base += ["--batch", "256", "--lr", "3e-3", "--threads", str(a.threads), "--time-budget", str(a.time_budget)]
    base += ["--limit", str(a.limit)] if a.limit else []
    t0 = time.perf_counter()
    deadline = t0 + (a.deadline or a.time_budget + 150)
    procs: dict = {}
    logits: dict[str, np.ndarray] = {}
    report: dict = {"seconds": 0.0, "teachers": {}}
    try:
        for name, extra in VARIANTS[: a.teachers]:
            cmd = [*base, "--out", str(work / name), *extra]
            log = (work / f"{name}.log").open("w")
            procs[name] = (cmd, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
        running = dict(procs)
        while running:  # each teacher saved as it finishes: a call cut short still returns the finished ones
            time.sleep(1.0)
            late = time.perf_counter() > deadline
            for name, (cmd, proc, log) in list(running.items()):
                if proc.poll() is None and not late:
                    continue
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                del running[name]
                log.close()
                collect(name, cmd, proc.returncode, late, folder, work, logits, report)
                finish(a.out, logits, report, t0)
    finally:
        for _, proc, log in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    ensemble(folder, a.limit, logits, report)
    finish(a.out, logits, report, t0)
    print(f"{len(logits)} of {len(procs)} teachers in {report['seconds']} s; {a.out}/teachers.npz", flush=True)
    return 0 if len(logits) == len(procs) else 1


def collect(name: str, cmd: list[str], rc: int, killed: bool, folder: Path, work: Path, logits: dict, report: dict) -> None:
    """One finished (or killed) teacher's summary into ``report`` and its ``train_logits.npy`` into ``logits``."""
    entry: dict = {"command": " ".join(cmd[1:]).replace(str(folder), "FER2013Train").replace(str(work), "WORK"), "returncode": rc}
    summary = work / name / "train_summary.json"
    if rc == 0 and summary.exists():
        s = json.loads(summary.read_text())
        entry |= {k: v for k, v in s.items() if k not in ("history", "config")}
        logits[name] = np.load(work / name / "train_logits.npy")
    else:
        entry["log_tail"] = (work / f"{name}.log").read_text()[-2000:]
        entry["killed_at_deadline"] = killed
    report["teachers"][name] = entry
    print(f"{name}: {entry.get('best_val_acc1', 'killed at the deadline' if killed else 'failed')} (rc {rc})", flush=True)


def ensemble(folder: Path, limit: int | None, logits: dict, report: dict) -> None:
    """The mean logits' acc@1 on the selection split, into ``report`` (a convenience: the logits are what matters)."""
    if len(logits) < 2:
        return
    try:
        from ferbatch.training.data import load_faces
        from ferbatch.training.protocol import selection_mask

        faces = load_faces(folder, 48, limit)
        sel, y = selection_mask(faces.names), faces.labels
        mean = np.mean(list(logits.values()), 0)
        report["ensemble_selection_acc1"] = float((mean[sel].argmax(1) == y[sel]).mean())
    except Exception as e:
        report["ensemble_error"] = f"{type(e).__name__}: {e}"


def finish(out: Path, logits: dict, report: dict, t0: float) -> None:
    """Write ``teachers.npz`` and ``teachers.json`` (again after each teacher)."""
    report["seconds"] = round(time.perf_counter() - t0, 1)
    np.savez_compressed(out / "teachers.npz", **logits)
    (out / "teachers.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.exit(main())
