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


class FacesMode(StrEnum):
    """How ``ferbatch eval`` takes each labelled image (``ferbatch.training.evaluate.FACE_MODES``)."""

    auto = "auto"
    detect = "detect"
    crops = "crops"


def eval_cmd(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="FER+ folder (images + label.csv), FER+ sample folder (images + labels.csv), or one folder per emotion.",
            metavar="DIR",
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Registry classifier name, or a file whose sha256 is a registry entry's; default: the registry's default classifier.",
            metavar="NAME|FILE",
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for metrics.json, confusion.csv, confusion.png.", metavar="DIR")] = None,
    fmt: Annotated[EvalFormat, typer.Option("--format", help="table, or json (the whole result as one object).")] = EvalFormat.table,
    faces: Annotated[
        FacesMode,
        typer.Option(
            "--faces",
            help="crops: the images are face crops, resized whole; detect: the images are photos, each one's top face is found "
            "and cut as `ferbatch run` cuts faces; auto: photos are the images whose shorter side is >= 96 px (face-crop datasets larger than that: use crops).",
        ),
    ] = FacesMode.auto,
    detector: Annotated[
        str | None,
        typer.Option(
            "--detector",
            help="Registry detector for photos, and for aligning landmark classifiers; default: the registry's.",
            metavar="NAME",
        ),
    ] = None,
    prior: Annotated[
        str | None,
        typer.Option(
            help="Class prior of the decision, as `ferbatch run --prior`; default: the registry's.", metavar="as-trained|balanced|graph"
        ),
    ] = None,
    align: Annotated[
        bool | None,
        typer.Option(
            "--align/--no-align", help="Aligned crops for photos, as `ferbatch run --align`; default: the registry's.", show_default=False
        ),
    ] = None,
) -> None:
    """Evaluate an expression classifier: acc@1, acc@5, per-class and macro precision/recall/specificity/F1, confusion matrix.

    FER+ protocol: majority label, unknown/NF dropped. Example: ferbatch eval --data ../shared/data/ferplus/FER2013Valid --out eval/

    Your own labelled photos: one folder per emotion (FER+ names, or happy/angry/sad/surprised/fearful/disgusted...);
    photos larger than a face crop have their face found and cut as `ferbatch run` does (--faces).
    """
    import json

    from rich.progress import Progress

    from ferbatch.training.data import describe_counts
    from ferbatch.training.evaluate import evaluate, write_outputs

    try:
        with Progress(transient=True, console=console) as bar:
            tasks: list = []  # the bar's task, added when the first photos are done (crops need none)

            def photos_done(done: int, total: int) -> None:
                if not tasks:
                    tasks.append(bar.add_task("photos through the detector", total=total))
                bar.update(tasks[0], completed=done)

            res = evaluate(model, data, faces_mode=faces.value, detector=detector, progress=photos_done, prior=prior, align=align)
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
        f"skipped: {describe_counts(res['skipped'])}; classes the model lacks: {', '.join(res['classes_missing']) or 'none'}"
        + (f"; {res['align_fallback']} faces without landmarks fell back to a plain resize" if res["align_fallback"] else "")
        + (
            f"; {res['photos']} photos through {res['detector']} ({res['no_face']} without a face, classified whole"
            + (f": {', '.join(res['no_face_files'][:5])}{' ...' if res['no_face'] > 5 else ''}" if res["no_face"] else "")
            + (f"; acc@1 {res['acc1_faces_found']:.4f} on the photos with a face" if "acc1_faces_found" in res else "")
            + ")"
            if res["photos"]
            else ""
        ),
        soft_wrap=True,
        highlight=False,
        markup=False,
    )


def train(
    data: Annotated[
        Path, typer.Option("--data", help="FER+ training folder (images + label.csv) or FER2013Train.tar.gz.", metavar="DIR|TAR")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for checkpoints, best.pt, model.onnx, train_summary.json.", metavar="DIR")],
    val: Annotated[
        Path | None,
        typer.Option(
            "--val",
            help="Validation folder (best epoch and early stopping), or 'selection': the protocol's selection split of --data "
            "(10 % by image name), held out of training.",
            metavar="DIR|selection",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs (cosine one-cycle schedule over them).", metavar="N", min=1)] = 16,
    label_mode: Annotated[
        LabelMode, typer.Option(help="probability: the FER+ vote distribution; majority: its most voted label.")
    ] = LabelMode.probability,
    width: Annotated[int, typer.Option(help="Channels of the first block (16 = 147k parameters).", metavar="N", min=1)] = 16,
    limit: Annotated[int | None, typer.Option(help="Use only the first N training images (smoke runs).", metavar="N", min=1)] = None,
    arch: Annotated[str, typer.Option(help="vgg (v1) | res (one residual block more at 6x6).", metavar="vgg|res")] = "vgg",
    augment: Annotated[
        str, typer.Option(help="basic (v1) | pipeline (crop jitter, blur, down-up, JPEG, gamma, cutout).", metavar="basic|pipeline")
    ] = "basic",
    balance: Annotated[str, typer.Option(help="none | logit_adjust (Menon et al. 2021) | sqrt_sampling.", metavar="MODE")] = "none",
    mixup: Annotated[float, typer.Option(help="mixup Beta(alpha, alpha); 0 = off.")] = 0.0,
    lr: Annotated[float, typer.Option(help="Peak learning rate of the one-cycle schedule.")] = 3e-3,
    init: Annotated[
        Path | None, typer.Option(help="Start from the weights of an exported model of the same arch and width (fine-tuning).")
    ] = None,
    select: Annotated[
        str, typer.Option(help="Best-epoch criterion on validation: acc1 | acc1+f1 (mean of acc@1 and macro-F1).", metavar="acc1|acc1+f1")
    ] = "acc1",
    threads: Annotated[int, typer.Option(help="torch threads; 0 = torch's default.")] = 0,
    seed: Annotated[
        int, typer.Option(help="Seed of the initial weights, the shuffling and the augmentation (teachers of an ensemble differ by it).")
    ] = 0,
    batch: Annotated[int, typer.Option(help="Images per step.", metavar="N", min=1)] = 128,
    device: Annotated[str, typer.Option(help="cpu | cuda (an NVIDIA GPU; augmentation stays on the CPU).", metavar="cpu|cuda")] = "cpu",
    time_budget: Annotated[float, typer.Option(help="Stop after the epoch that passes this many seconds; 0 = none.", metavar="S")] = 0.0,
    save_logits: Annotated[
        bool, typer.Option(help="Write the best model's train_logits.npy / val_logits.npy (a teacher for --teacher).")
    ] = False,
    teacher: Annotated[
        str | None,
        typer.Option(
            help="Distil from teachers: comma-separated train_logits.npy files, or .npz files of several (scripts/gpu_teachers.py's teachers.npz); same data and --limit; all averaged.",
            metavar="NPY|NPZ[,...]",
        ),
    ] = None,
    distill_alpha: Annotated[float, typer.Option(help="Weight of the distillation term (0..1).", min=0.0, max=1.0)] = 0.7,
    distill_t: Annotated[float, typer.Option(help="Distillation temperature.", min=0.1)] = 4.0,
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
                arch=arch,
                augment=augment,
                balance=balance,
                mixup=mixup,
                lr=lr,
                init=str(init) if init else None,
                select=select,
                threads=threads,
                seed=seed,
                batch=batch,
                device=device,
                time_budget_s=time_budget,
                save_logits=save_logits,
                teacher=teacher,
                distill_alpha=distill_alpha,
                distill_t=distill_t,
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
