"""The job's progress bar (rich), as ``ferbatch run`` and :func:`ferbatch.run` show it."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["progress_bar", "wants_bar"]

Callback = Callable[[str, int, int], None]


def wants_bar(stream: Any = None) -> bool:
    """True when a bar can be seen: ``stream`` (default standard error) is a terminal, or this is
    a Jupyter notebook (rich renders the bar as a live cell output there)."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        if isatty is not None and isatty():
            return True
    except ValueError:  # a closed stream
        return False
    from rich.console import Console

    return bool(Console(file=stream).is_jupyter)


@contextlib.contextmanager
def progress_bar(console: Any = None, *, disable: bool = False) -> Iterator[Callback]:
    """A rich progress bar (one line per phase: "indexing videos", then "frames": done/total,
    elapsed, remaining) for the job's ``progress(kind, done, total)`` callback, which it yields.

    Args:
        console: the rich Console to draw on (default: standard error).
        disable: draw nothing (the callback is still valid).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console if console is not None else Console(stderr=True),
        disable=disable,
        transient=False,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(kind: str, done: int, total: int) -> None:
            if kind not in tasks:
                tasks[kind] = bar.add_task("indexing videos" if kind == "probe" else "frames", total=total)
            bar.update(tasks[kind], completed=done, total=total)

        yield progress
