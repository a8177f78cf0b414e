"""``ferbatch eval`` and ``ferbatch train``: classifier metrics and training."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ferbatch.cli.common import LabelMode, console
from ferbatch.cli.common import fail as _fail
from ferbatch.errors import FerbatchError

__all__ = ["register"]


class EvalFormat(StrEnum):
    """Output formats of ``ferbatch eval``."""

    table = "table"
    json = "json"


def eval_cmd(
    model: Annotated[
        str, typer.Option("--model", help="Registry classifier name, or a file whose sha256 is a registry entry's.", metavar="NAME|FILE")
    ],
    data: Annotated[Path, typer.Option("--data", help="FER+ folder (images + label.csv) or one folder per emotion.", metavar="DIR")],
    out: Annotated[Path | None, typer.Option("--out", help="Folder for metrics.json, confusion.csv, confusion.png.", metavar="DIR")] = None,
    fmt: Annotated[EvalFormat, typer.Option("--format", help="table, or json (the whole result as one object).")] = EvalFormat.table,
) -> None:
    """Evaluate an expression classifier: acc@1, acc@5, per-class and macro precision/recall/specificity/F1, confusion matrix.

    FER+ protocol: majority label, unknown/NF dropped. Example: ferbatch eval --model mini-xception-fer2013 --data ../shared/data/ferplus/FER2013Valid --out eval/
    """
    import json

    from ferbatch.training.evaluate import evaluate, write_outputs

    try:
        res = evaluate(model, data)
    except FerbatchError as e:
        _fail(e)
    if out:
        write_outputs(res, out)
    if fmt is EvalFormat.json:
        print(json.dumps(res))
        return
    t = Table(title=f"{res['model']} on {data}: acc@1 {res['acc1']:.4f}, acc@5 {res['acc5']:.4f}, n={res['n']}")
    for c in ("class", "precision", "recall", "specificity", "F1", "support"):
        t.add_column(c)
    for emotion, m in res["per_class"].items():
        t.add_row(emotion, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['specificity']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    mac = res["macro"]
    t.add_row("macro", f"{mac['precision']:.3f}", f"{mac['recall']:.3f}", f"{mac['specificity']:.3f}", f"{mac['f1']:.3f}", str(res["n"]))
    Console().print(t)
    console.print(
        f"skipped: {res['skipped'] or 'none'}; classes the model lacks: {res['classes_missing'] or 'none'}"
        + (f"; {res['align_fallback']} faces without landmarks fell back to a plain resize" if res["align_fallback"] else ""),
        soft_wrap=True,
        highlight=False,
        markup=False,
    )


def train(
    data: Annotated[
        Path, typer.Option("--data", help="FER+ training folder (images + label.csv) or FER2013Train.tar.gz.", metavar="DIR|TAR")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for checkpoints, best.pt, model.onnx, train_summary.json.", metavar="DIR")],
    val: Annotated[Path | None, typer.Option("--val", help="Validation folder (selection and early stopping).", metavar="DIR")] = None,
    epochs: Annotated[int, typer.Option(help="Epochs (cosine one-cycle schedule over them).", metavar="N", min=1)] = 16,
    label_mode: Annotated[
        LabelMode, typer.Option(help="probability: the FER+ vote distribution; majority: its most voted label.")
    ] = LabelMode.probability,
    width: Annotated[int, typer.Option(help="Channels of the first block (16 = 147k parameters).", metavar="N", min=1)] = 16,
    limit: Annotated[int | None, typer.Option(help="Use only the first N training images (smoke runs).", metavar="N", min=1)] = None,
) -> None:
    """Train the compact FER+ 8-class CNN (needs the 'train' extra: torch==2.13.0); resumes from OUT/checkpoint.pt.

    Example: ferbatch train --data ../shared/data/ferplus/FER2013Train.tar.gz --val ../shared/data/ferplus/FER2013Valid --out model_dir/
    """
    from ferbatch.training.train import TrainConfig, prepare_train_folder
    from ferbatch.training.train import train as do_train

    try:
        folder = prepare_train_folder(data)
        s = do_train(
            TrainConfig(
                data=str(folder),
                out=str(out),
                val=str(val) if val else None,
                epochs=epochs,
                label_mode=label_mode.value,
                width=width,
                limit=limit,
            ),
            log=lambda m: console.print(m, highlight=False, markup=False),
        )
    except FerbatchError as e:
        _fail(e)
    print(f"best val acc@1 {s['best_val_acc1']:.4f} at epoch {s['best_epoch']}; {s['train_seconds']:.0f} s; {out}/model.onnx")


def register(app: typer.Typer) -> None:
    """Add ``eval`` and ``train`` to ``app``."""
    app.command("eval")(eval_cmd)
    app.command()(train)
