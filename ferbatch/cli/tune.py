"""``ferbatch tune``: hyperparameter search for the classifier (Ray Tune, ASHA)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ferbatch.cli.common import fail

__all__ = ["register"]


def tune(
    data: Annotated[Path, typer.Option("--data", help="FER+ training folder (images + label.csv) or FER2013Train.tar.gz.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for results.csv, best_config.json and the trial records.")],
    val: Annotated[
        Path | None, typer.Option("--val", help="Validation folder (default: hold out the last 20% of the training images).")
    ] = None,
    samples: Annotated[int, typer.Option(help="Trials (configurations drawn from the search space).")] = 8,
    epochs: Annotated[int, typer.Option(help="Most epochs per trial (ASHA max_t).")] = 4,
    grace: Annotated[int, typer.Option(help="Epochs every trial gets before ASHA may stop it.")] = 1,
    limit: Annotated[int | None, typer.Option(help="Use only the first N training images.")] = 4000,
    cpus_per_trial: Annotated[int, typer.Option(help="CPUs per trial (torch threads); trials run in parallel on the rest.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the search and of each trial.")] = 0,
) -> None:
    """Search learning rate, width, augmentation strength, label mode and class weighting with Ray
    Tune and ASHA early stopping; write OUT/results.csv and OUT/best_config.json (needs the 'tune'
    and 'train' extras).

    Example: ferbatch tune --data ../shared/data/ferplus/FER2013Train.tar.gz --val ../shared/data/ferplus/FER2013Valid --out tune/ --samples 8 --epochs 4
    """
    from ferbatch.errors import FerbatchError
    from ferbatch.training.tune import TuneConfig
    from ferbatch.training.tune import tune as run_tune

    try:
        rows, best = run_tune(
            TuneConfig(
                data=str(data),
                out=str(out),
                val=str(val) if val else None,
                samples=samples,
                epochs=epochs,
                grace=grace,
                limit=limit,
                cpus_per_trial=cpus_per_trial,
                seed=seed,
            )
        )
    except FerbatchError as e:
        fail(e)
    t = Table(title=f"ferbatch tune: {len(rows)} trials (best first)")
    for c in ("lr", "width", "aug", "label_mode", "class_weight", "best val acc@1", "epochs"):
        t.add_column(c)
    for r in rows:
        t.add_row(
            f"{r['lr']:.2e}",
            str(r["width"]),
            f"{r['aug']:.2f}",
            r["label_mode"],
            str(r["class_weight"]),
            f"{r['best_val_acc1']:.4f}" if not r["error"] else escape("error: " + r["error"][:60]),
            str(r["epochs"]),
        )
    Console().print(t)
    print(f"best val acc@1 {best['best_val_acc1']:.4f}; {out}/best_config.json, {out}/results.csv")


def register(app: typer.Typer) -> None:
    """Add ``tune`` to ``app``."""
    app.command()(tune)
