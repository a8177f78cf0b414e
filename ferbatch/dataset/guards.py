"""The checks a dataset writer makes before it adds rows (:class:`ferbatch.dataset.writer.DatasetWriter`
runs them under the lock; ``ferbatch run`` runs them once more before it loads models, so a
mistake is refused before anything in OUT is touched)."""

from __future__ import annotations

import os

from ferbatch.config import JobConfig, resolve_defaults, with_defaults
from ferbatch.dataset.store import LAYOUT, TABLES, dataset_layout
from ferbatch.errors import ConfigError, OutputError
from ferbatch.location import Location, open_location

__all__ = ["DATASET_ENTRIES", "check_out_dir", "check_settings"]

# what a ferbatch output directory holds (a first run interrupted before its manifest holds a subset)
DATASET_ENTRIES = frozenset(
    {
        "_manifest.json",
        "videos.parquet",
        *TABLES,
        "_index",
        "_plans",
        "_staging",
        ".ferbatch.lock",
        "_lock.json",
        "_live.json",
    }
)


def check_out_dir(out_dir: str | os.PathLike[str] | Location, *, force: bool = False) -> None:
    """Refuse an output directory that is neither new, empty nor a ferbatch dataset.

    Args:
        out_dir: the dataset (a local path, a URI or a :class:`~ferbatch.location.Location`).
        force: accept a non-empty folder anyway (ferbatch then writes its files next to the others).

    Raises:
        OutputError: ``out_dir`` is a file, or a non-empty folder with entries a ferbatch dataset
            does not have (the message names the folder, a few of them and the way out: ``--force``).
    """
    loc = open_location(out_dir)
    if loc.is_file(""):
        raise OutputError(f"{loc.uri} | --out is a file, not a directory")
    if force or not loc.is_dir(""):
        return
    foreign = [n for n in loc.list_names() if n not in DATASET_ENTRIES and not n.startswith(".")]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutputError(
            f"{loc.uri} | --out is a non-empty folder that is not a ferbatch dataset ({shown}); "
            "choose a new or empty folder, or pass --force to write into it anyway"
        )


def check_settings(loc: Location, manifest: dict | None, cfg: JobConfig, *, overwrite: bool = False, command: str = "run") -> None:
    """Refuse to add rows made with ``cfg`` to a dataset whose rows were made otherwise.

    Args:
        loc: the dataset; manifest: its manifest (None: none yet).
        cfg: the writer's settings (registry defaults are filled in before comparing).
        overwrite: the caller starts the dataset afresh: nothing to refuse.
        command: the writer's command, for the way out the message suggests.

    Raises:
        ConfigError: the dataset is in layout 1, or holds rows (a job's videos or any commit)
            made with other result-changing settings; the message names the folder (its URI) and
            each differing setting as ``name: recorded -> new``.
    """
    if overwrite:
        return
    if dataset_layout(loc, manifest) == 1:
        raise ConfigError(
            f"{loc.uri} | holds a dataset in layout 1 (one folder and file per video and table, ferbatch 0.3 and older); "
            f"run `ferbatch compact {loc.uri}` to rewrite it in layout {LAYOUT} first"
            + (", or use --overwrite to start afresh" if command == "run" else "")
        )
    if not manifest:
        return
    diff = with_defaults(cfg).differences(resolve_defaults(manifest.get("config", {})))
    if diff and (manifest.get("videos") or manifest.get("commits")):  # rows of a job or of a live session
        way_out = "use another --out, the same settings, or --overwrite to start the dataset afresh"
        if command != "run":
            way_out = "use another --out or the same settings (`ferbatch run --overwrite` starts a dataset afresh)"
        raise ConfigError(f"{loc.uri} | holds rows made with other result-changing settings ({'; '.join(diff)}); {way_out}")
