"""The command line (typer): ``ferbatch = "ferbatch.cli:app"``. Commands parse, call, print; they hold no logic."""

from ferbatch.cli.app import app, main

__all__ = ["app", "main"]
