"""``ferbatch models`` and ``ferbatch build-engines``: the registry and TensorRT plans."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ferbatch.cli.common import fail as _fail
from ferbatch.errors import FerbatchError

__all__ = ["register"]


def build_engines(
    precision: Annotated[str, typer.Option(help="fp32 | fp16.")] = "fp32",
    max_batch: Annotated[int, typer.Option(help="Profile max batch (detector: frames, classifier: faces).")] = 64,
    models_: Annotated[list[str] | None, typer.Option("--models", help="Registry names (default: the default pair).")] = None,
    engines_dir: Annotated[Path | None, typer.Option(help="Where plans go (default engines/built/).")] = None,
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
                prepare_detector(f, spec, in_graph_nms=not numpy_nms, precision=precision)
                if spec.kind == "detector"
                else prepare_classifier(f, spec, precision=precision)
            )
            inp = spec.input
            key = engine_key(spec.name, graph, precision, inp.name, (inp.channels, inp.height, inp.width), max_batch)
            print(build_or_load_plan(graph, key, engines_dir))
    except FerbatchError as e:
        _fail(e)


def models() -> None:
    """List the model registry (ferbatch/models/registry.toml) and where each file resolves.

    Example: FERBATCH_MODEL_MIRROR=../shared/models ferbatch models
    """
    from ferbatch.models.registry import load_registry, resolve_model_file

    reg = load_registry()
    t = Table(title=str(reg.path))
    for col in ("name", "kind", "family", "license", "file"):
        t.add_column(col)
    for name, spec in reg.models.items():
        try:
            where = str(resolve_model_file(spec, allow_download=False))
        except FerbatchError as e:
            where = f"[red]{str(e).split('|', 1)[-1].strip()}[/red]"
        default = " (default)" if name in (reg.default_detector, reg.default_classifier) else ""
        t.add_row(name + default, spec.kind, spec.family, spec.license, where)
    Console().print(t)


def register(app: typer.Typer) -> None:
    """Add ``models`` and ``build-engines`` to ``app``."""
    app.command()(models)
    app.command("build-engines")(build_engines)
