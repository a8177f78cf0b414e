"""The package's shape: layers import one way, no cycles, one helper per concern, small modules.

Parsed from the source with ``ast`` (imports inside functions count too), so the rules hold for
lazy imports as well.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "ferbatch"

# what each pure layer may import from ferbatch (besides itself)
PURE_LAYERS = {
    "ferbatch.media": {"ferbatch.errors", "ferbatch.location", "ferbatch.atomic", "ferbatch.picture"},
    "ferbatch.vision": {"ferbatch.errors", "ferbatch.labels", "ferbatch.specs", "ferbatch.picture", "ferbatch.colour", "ferbatch.faces"},
    "ferbatch.picture": {"ferbatch.colour"},
    "ferbatch.colour": set(),
    "ferbatch.dataset.schema": {"ferbatch.labels", "ferbatch.faces"},
    "ferbatch.faces": {"ferbatch.labels"},
    "ferbatch.specs": set(),
    "ferbatch.labels": {"ferbatch.errors"},
    "ferbatch.errors": set(),
    "ferbatch.atomic": {"ferbatch.errors"},
    "ferbatch.location": {"ferbatch.errors", "ferbatch.atomic"},
}
MAX_LINES = 400


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """ferbatch modules imported anywhere in the file (``from ferbatch.x import y`` gives
    ``ferbatch.x.y`` when that is a module, else ``ferbatch.x``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ferbatch")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ferbatch"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


FILES = sorted(PKG.rglob("*.py"))
MODULES = {_module_name(p) for p in FILES}
GRAPH = {_module_name(p): _imports(p) - {_module_name(p)} for p in FILES}


def _in_layer(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


@pytest.mark.parametrize("layer", sorted(PURE_LAYERS))
def test_pure_layers_import_nothing_above_them(layer):
    allowed = PURE_LAYERS[layer]
    bad = {
        (m, dep)
        for m, deps in GRAPH.items()
        if _in_layer(m, layer)
        for dep in deps
        if not _in_layer(dep, layer) and not any(_in_layer(dep, a) for a in allowed)
    }
    assert not bad, f"{layer} imports builder layers: {sorted(bad)}"


def test_no_import_cycles():
    # package __init__ re-exports are edges too; a cycle through them would still be a cycle
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(GRAPH.get(m, ())):
            if d not in GRAPH or _in_layer(m, d):  # a module importing its own package's __init__
                continue
            if state.get(d) == 1:
                cycle = stack[stack.index(d) :] + [d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def test_modules_stay_small():
    big = {str(p.relative_to(PKG)): n for p in FILES if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_one_atomic_write_helper():
    # every rename-into-place and temp file goes through ferbatch/atomic.py
    pattern = re.compile(r"os\.replace\(|os\.rename\(|mkstemp\(|NamedTemporaryFile\(")
    elsewhere = [str(p.relative_to(PKG)) for p in FILES if p.name != "atomic.py" and pattern.search(p.read_text())]
    assert not elsewhere, f"temp-file-and-rename writers outside ferbatch/atomic.py: {elsewhere}"


def test_one_iou():
    pattern = re.compile(r"def \w*iou\w*\(", re.IGNORECASE)
    defs = [str(p.relative_to(PKG)) for p in FILES for _ in pattern.finditer(p.read_text())]
    assert defs == ["vision/boxes.py"], f"IoU defined in {defs}; keep the one in vision/boxes.py"


FAMILY_NAMES = {"yunet", "ultraface"}  # detector families / decoders (ferbatch/models/registry.toml)


def _family_compares(tree: ast.AST) -> list[int]:
    """Lines comparing a family name: an ==, !=, in or not in with ``family`` (a name or an
    attribute) or a "yunet"/"ultraface" literal (alone or in a tuple/list/set) on either side
    (``decoder`` is also the video decoder's name, so only its values are looked for)."""

    def named(e: ast.expr) -> bool:
        if isinstance(e, ast.Constant):
            return e.value in FAMILY_NAMES
        if isinstance(e, ast.Name | ast.Attribute):
            return (e.id if isinstance(e, ast.Name) else e.attr) == "family"
        if isinstance(e, ast.Tuple | ast.List | ast.Set):
            return any(named(x) for x in e.elts)
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and e.func.attr in ("lower", "strip"):
            return named(e.func.value)
        return False

    def equality(n: ast.Compare) -> bool:  # ``x is None`` tests presence, not a family
        return any(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in n.ops)

    return sorted(
        {n.lineno for n in ast.walk(tree) if isinstance(n, ast.Compare) and equality(n) and any(named(e) for e in (n.left, *n.comparators))}
    )


def test_no_family_routing_by_string_outside_the_registry():
    """Detector families route through their decoder type (ferbatch/vision/decoders.py), chosen once
    by ferbatch/models/registry.py from the entry's ``decoder`` key: no other module compares a
    family or decoder string (``family == "yunet"``, ``spec.family in ("ultraface", ...)``,
    ``decoder.name != "yunet"``) nor names a YuNet entry. Literals in registry.toml and the docs are fine."""
    hits = {
        str(p.relative_to(PKG)): lines for p in FILES if p.name != "registry.py" and (lines := _family_compares(ast.parse(p.read_text())))
    }
    assert not hits, f"model family compared as a string in {hits}; use the decoder (ModelSpec.decoder and its properties)"
    named_entry = [str(p.relative_to(PKG)) for p in FILES if p.name != "registry.py" and re.search(r"\"yunet-\d", p.read_text())]
    assert not named_entry, f"a YuNet registry entry named in {named_entry}; take it from the registry's defaults"


def test_the_family_comparison_check_sees_comparisons():
    """The AST check above finds each spelling of a family comparison (it is not vacuous)."""
    src = """
a = spec.family == "yunet"
b = "ultraface" != spec.family
c = spec.family in ("ultraface", "yunet")
d = name == "yunet"
e = spec.decoder.name is not None and spec.decoder.name == "yunet"
f = family.lower() == other
ok = DECODERS["yunet"]
"""
    assert _family_compares(ast.parse(src)) == [2, 3, 4, 5, 6, 7]


def test_service_and_live_sit_above_the_job():
    # the HTTP service is imported only by the CLI; live sources only by the service and the CLI
    for top, allowed in (
        ("ferbatch.service", ("ferbatch.service", "ferbatch.cli")),
        ("ferbatch.live", ("ferbatch.live", "ferbatch.service", "ferbatch.cli")),
    ):
        bad = {(m, d) for m, deps in GRAPH.items() for d in deps if _in_layer(d, top) and not any(_in_layer(m, a) for a in allowed)}
        assert not bad, f"{top} imported from below: {sorted(bad)}"


def test_one_writer_per_location_kind():
    # object storage is written through Location.write_bytes alone (one PUT of a finished buffer):
    # an open_output_stream elsewhere could leave a half-written object where readers look
    pattern = re.compile(r"open_output_stream\(")
    elsewhere = [str(p.relative_to(PKG)) for p in FILES if p.name != "location.py" and pattern.search(p.read_text())]
    assert not elsewhere, f"object-storage writers outside ferbatch/location.py: {elsewhere}"


def test_no_merge_conflict_markers_left():
    root = PKG.parent
    texts = [
        p
        for d in ("ferbatch", "tests", "scripts", "docs", "jobs")
        for p in (root / d).rglob("*")
        if p.suffix in {".py", ".md", ".toml", ".yaml", ".json"}
    ]
    texts += [root / "README.md", root / "pyproject.toml"]
    marked = [str(p.relative_to(root)) for p in texts if re.search(r"^(<<<<<<< |>>>>>>> |=======$)", p.read_text(errors="replace"), re.M)]
    assert not marked, f"merge-conflict markers in {marked}"


# --- one writer of datasets ------------------------------------------------------------------------------

# the modules that may write a manifest, a videos table or a part: the writer and the store primitives it uses
DATASET_WRITERS = {"dataset/writer.py", "dataset/store.py"}
# calls that write a dataset's manifest, videos table or parts (or any Parquet file)
WRITE_CALLS = {"write_manifest", "write_videos", "write_commit", "write_parquet", "write_table", "write_dataset", "write_to_dataset"}
# Parquet written elsewhere on purpose, never into a dataset
OTHER_PARQUET = {"cli/render.py": "query results exported to a file the user names"}
DATASET_FILES = ("_manifest.json", "videos.parquet", "faces/", "frames/", "tracks/")


def _dataset_writes(path: Path) -> list[str]:
    """Where a module writes a dataset's manifest, videos table or parts itself: a call (or an
    import) of a store write primitive, or ``.write_bytes`` of a dataset file."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "ferbatch.dataset.store":
            hits += [f"line {node.lineno}: imports {a.name}" for a in node.names if a.name in WRITE_CALLS]
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name in WRITE_CALLS:
            hits.append(f"line {node.lineno}: {name}()")
        elif name == "write_bytes" and node.args:
            first = node.args[0]
            if isinstance(first, ast.JoinedStr) and first.values:
                first = first.values[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.startswith(DATASET_FILES):
                hits.append(f"line {node.lineno}: write_bytes({first.value!r}...)")
    return hits


def test_only_the_dataset_writer_writes_manifests_videos_tables_and_parts():
    """Every write of a dataset goes through ``ferbatch/dataset/writer.py`` (lock, settings check,
    commit protocol). Mutations run, each failing it: ``write_manifest(...)`` (imported from the
    store) put back into ``live/watch.py``; ``self.loc.write_bytes("_manifest.json", ...)`` in
    ``job/ledger.py``."""
    found = {
        rel: hits
        for p in FILES
        if (rel := str(p.relative_to(PKG))) not in DATASET_WRITERS
        if (hits := [h for h in _dataset_writes(p) if not (rel in OTHER_PARQUET and "write_table" in h)])
    }
    assert not found, f"dataset writes outside ferbatch/dataset/writer.py (use a DatasetWriter): {found}"


def test_the_dataset_check_catches_a_write_outside_the_writer(tmp_path):
    # the check above must be able to fail: each way of writing a dataset file is seen
    code = (
        "from ferbatch.dataset.store import write_manifest\n"
        "def f(loc, m, t):\n"
        "    write_manifest(loc, m)\n"
        "    store.write_videos(loc, t, m)\n"
        "    loc.write_bytes('_manifest.json', b'{}')\n"
        "    loc.write_bytes(f'faces/part-{t}.parquet', b'')\n"
        "    loc.write_bytes('_live.json', b'{}')\n"
    )
    (tmp_path / "m.py").write_text(code)
    hits = _dataset_writes(tmp_path / "m.py")
    assert len(hits) == 5 and not any("_live.json" in h for h in hits), hits


def test_the_dataset_layer_sits_below_job_live_service_and_cli():
    # the write protocol lives in dataset/; job/, live/ and service/ use it, never the other way round
    above = ("ferbatch.job", "ferbatch.live", "ferbatch.service", "ferbatch.cli", "ferbatch.pipeline", "ferbatch.training")
    bad = {(m, d) for m, deps in GRAPH.items() if _in_layer(m, "ferbatch.dataset") for d in deps if any(_in_layer(d, a) for a in above)}
    assert not bad, f"ferbatch.dataset imports layers above it: {sorted(bad)}"
