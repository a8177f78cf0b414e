"""``ferbatch models`` and ``ferbatch build-engines``: the registry and TensorRT plans."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ferbatch.cli.common import Precision
from ferbatch.cli.common import fail as _fail
from ferbatch.errors import FerbatchError

__all__ = ["register"]


def build_engines(
    precision: Annotated[Precision, typer.Option(help="The graphs' own types (NMS stays fp32).")] = Precision.fp32,
    max_batch: Annotated[int, typer.Option(help="Profile max batch (detector: frames, classifier: faces).", metavar="N", min=1)] = 64,
    models_: Annotated[
        list[str] | None, typer.Option("--models", help="Registry names, repeatable (default: the default pair).", metavar="NAME")
    ] = None,
    engines_dir: Annotated[Path | None, typer.Option(help="Where plans go (default engines/built/).", metavar="DIR")] = None,
    numpy_nms: Annotated[bool, typer.Option("--numpy-nms", help="Build the raw detector (NMS in NumPy).")] = False,
) -> None:
    """Build TensorRT engines from the prepared ONNX graphs (needs a GPU, tensorrt and pycuda).

    Plans are keyed by ONNX sha256, precision, profile, TensorRT version, CUDA major and GPU;
    a stale or foreign plan is rebuilt. Example: ferbatch build-engines --precision fp16 --max-batch 64
    """
    from ferbatch.models.graphs import prepare_classifier, prepare_detector
    from ferbatch.models.registry import load_registry, resolve_model_file
    from ferbatch.models.trt_plans import build_or_load_plan, engine_key

    try:
        reg = load_registry()
        for name in models_ or [reg.default_detector, reg.default_classifier]:
            spec = reg.get(name)
            f = resolve_model_file(spec)
            graph = (
                prepare_detector(f, spec, in_graph_nms=not numpy_nms, precision=precision.value)
                if spec.kind == "detector"
                else prepare_classifier(f, spec, precision=precision.value)
            )
            inp = spec.input
            key = engine_key(spec.name, graph, precision.value, inp.name, (inp.channels, inp.height, inp.width), max_batch)
            print(build_or_load_plan(graph, key, engines_dir))
    except FerbatchError as e:
        _fail(e)


class ModelsFormat(StrEnum):
    """Output formats of ``ferbatch models``."""

    text = "text"
    json = "json"


def models(
    fmt: Annotated[
        ModelsFormat, typer.Option("--format", help="text: one block per model, values never cut; json: one array.")
    ] = ModelsFormat.text,
) -> None:
    """List the model registry (ferbatch/models/registry.toml) and where each file resolves.

    Every value is printed in full (file paths and URLs are never cut, whatever the terminal's width).
    A file that is not found yet says where it was looked for; `ferbatch run` downloads it when the
    network allows.

    Example: FERBATCH_MODEL_MIRROR=/abs/path/to/models ferbatch models --format json
    """
    import json

    from ferbatch.models.registry import cache_dir, load_registry, resolve_model_file

    reg = load_registry()
    rows: list[dict[str, Any]] = []
    for name, spec in reg.models.items():
        try:
            where, missing = str(resolve_model_file(spec, allow_download=False)), None
        except FerbatchError as e:
            where, missing = None, str(e).split("|", 1)[-1].strip()
        rows.append(
            {
                "name": name,
                "kind": spec.kind,
                "default": name in (reg.default_detector, reg.default_classifier),
                "family": spec.family,
                "license": spec.license,
                "file": where,
                "missing": missing,
                "sha256": spec.sha256,
                "url": spec.url,
                "source": spec.source,
            }
        )
    if fmt is ModelsFormat.json:
        print(json.dumps(rows, indent=1))
        return
    out = Console(soft_wrap=True, highlight=False)  # soft wrap: long values go to the terminal uncut
    out.print(f"registry: {reg.path}\ncache: {cache_dir()}", markup=False)
    for r in rows:
        out.print()
        out.print(f"[bold]{escape(r['name'])}[/bold] ({r['kind']}{', default' if r['default'] else ''})")
        for k in ("family", "license", "file", "sha256", "url", "source"):
            if r[k]:
                out.print(f"  {k:<8} {r[k]}", markup=False)
        if r["missing"]:
            out.print(f"  [red]{'missing':<8}[/red] {escape(r['missing'])}")


def register(app: typer.Typer) -> None:
    """Add ``models`` and ``build-engines`` to ``app``."""
    app.command()(models)
    app.command("build-engines")(build_engines)
