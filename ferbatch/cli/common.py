"""What the CLI modules share: the stderr console and turning an error into a one-line message."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["console", "fail"]

console = Console(stderr=True)


def fail(e: Exception, code: int = 2) -> None:
    """Print ``error: <message>`` on stderr and exit with ``code`` (2 = bad input or settings)."""
    console.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)
