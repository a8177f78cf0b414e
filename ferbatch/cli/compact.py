"""``ferbatch compact``: a dataset's rows rewritten into few large parts (and old layouts converted)."""

from __future__ import annotations

import typer

from ferbatch.cli.common import fail as _fail
from ferbatch.cli.results import OutArg
from ferbatch.errors import FerbatchError

__all__ = ["register"]


def compact(out: OutArg) -> None:
    """Merge a dataset's small parts (many small jobs, live sessions) into parts of about a million rows, and
    convert a layout-1 dataset (one folder per video, ferbatch 0.3 and older) to the current layout.

    Takes the dataset's lock; safe to interrupt (the manifest is saved once, at the end).

    Example: ferbatch compact out/
    """
    from rich.progress import Progress

    from ferbatch.job.compact import compact as run_compact

    try:
        with Progress(transient=True) as bar:
            task = bar.add_task("compacting", total=None)
            res = run_compact(out, progress=lambda done, total: bar.update(task, completed=done, total=total))
    except FerbatchError as e:
        _fail(e)
    what = "converted from layout 1" if res.layout_before == 1 else "merged"
    print(f"{out}: {what}: {res.parts_before} part files -> {res.parts_after} ({res.rows} rows rewritten)")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command()(compact)
