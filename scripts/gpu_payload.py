"""Carry the Python packages a GPU lease needs in the fewest calls, and install them there.

The GPU machine has PyTorch, CuPy and ONNX Runtime's CPU build but no network and none of ONNX Runtime's CUDA
build, PyAV, PyNvVideoCodec or Ray; each call of the device tool carries at most 64 MiB with the working
tree. The wheels for the device's Python (3.12, x86-64) are about 420 MB as downloaded (onnxruntime-gpu alone is
256 MB). This script packs them once here into one xz-compressed tar, without the parts ferbatch never loads (Ray's
Java jars and dashboard front end, PyNvVideoCodec's FFmpeg sources and samples), split into pieces that each fit a
call beside the tree; there, each call moves the pieces it carried aside (checking each piece's sha256), and the
call that completes the set unpacks them into one folder for ``PYTHONPATH``.

Here, with access to a package index (writes ``.whl/``, which git ignores; ``../shared``'s models and sample videos go
into the payload too, since ``../shared`` does not travel)::

    python scripts/gpu_payload.py download --wheels .whl/wheels
    python scripts/gpu_payload.py pack --wheels .whl/wheels --out .whl --shared ../shared [--ferplus]

There, one device call per piece, each carrying ``.whl/payload.json`` and the next ``.whl/payload.tar.xz.NNN``
(the machine keeps what earlier calls left while it stays warm), the last one running the work::

    python3 scripts/gpu_payload.py take .whl && eval "$(python3 scripts/gpu_payload.py env)" && \\
        FERBATCH_MODEL_MIRROR=/tmp/site/shared/models python3 scripts/gpu_check.py --data /tmp/site/shared/data ...

``take`` exits 0 once the set is complete and unpacked, 3 while pieces are missing (it names them), 2 without the
manifest, 1 on a piece whose sha256 is wrong. ``env`` prints the ``PYTHONPATH`` and the ``LD_LIBRARY_PATH`` of the
CUDA libraries that PyTorch's ``nvidia-*`` wheels hold (ONNX Runtime's ``preload_dlls`` looks only beside its own
install).
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's ferbatch, before any install there
from ferbatch.models.registry import sha256_file as sha256  # numpy is all it needs; the device has it

# What the GPU lease of 2026-11-29 ran with (docs/performance.md), plus Ray and the parts of its needs that the
# device image lacks (jsonschema's family); the image has numpy, OpenCV, onnx, pyarrow, typer, rich, aiohttp & co.
# DuckDB stays behind (23 MB of xz, about half a piece): the job, gpu_check and the teachers never import it (only
# `ferbatch query`/`report` do); a run under Ray with `import duckdb` blocked was checked here.
PAYLOAD = (
    "onnxruntime-gpu==1.31.1",
    "av==18.1.0",
    "PyNvVideoCodec==2.2.4",
    "ray==2.60.0",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "referencing==0.37.0",
    "rpds-py==2026.9.1",
)
PYTHON = "3.12"  # the device image's python3 (device KINDS.md)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# members ferbatch never loads: Ray's Java workers and dashboard front end, PyNvVideoCodec's sources and samples
DROP_PREFIXES = ("ray/jars/", "ray/dashboard/client/", "samples/", "benchmarks/", "docs/")
DROP_INFIXES = (".data/data/", ".data/headers/", ".data/scripts/")
# what gpu_check needs from ../shared (15 MB), and the training set for teachers (48 MB)
SHARED = ("models", "data/videos_faces", "data/videos_emotion_cremad", "data/videos_emotion_cremad_labels.csv")
FERPLUS = ("data/ferplus/FER2013Train.tar.gz",)
PIECE_MIB = 53  # 64 MiB per call, less the working tree (8.1 MiB on 2026-12-03) and a margin of ~3 MiB
MANIFEST = "payload.json"
STORE = Path("/tmp/ferbatch_payload")
SITE = Path("/tmp/site")


def site_name(member: str) -> str | None:
    """Where a wheel member lands in a ``--target`` folder (``X.data/purelib|platlib/...`` at the root), or None to drop it."""
    if member.endswith("/") or member.startswith(DROP_PREFIXES) or any(x in member for x in DROP_INFIXES):
        return None
    head, _, rest = member.partition("/")
    if head.endswith(".data"):
        kind, _, path = rest.partition("/")
        return path if kind in ("purelib", "platlib") and path else None
    return member


def download(wheels: Path) -> list[Path]:
    """``pip download`` of :data:`PAYLOAD` for the device's Python into ``wheels``; returns the wheel files."""
    wheels.mkdir(parents=True, exist_ok=True)
    plats = [x for p in PLATFORMS for x in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", PYTHON]
    subprocess.run([*cmd, "--implementation", "cp", *plats, "-d", str(wheels), *PAYLOAD], check=True)
    return sorted(wheels.glob("*.whl"))


def pack(wheels: list[Path], out: Path, piece_bytes: int = PIECE_MIB << 20, preset: int = 6, shared: dict[str, Path] | None = None) -> dict:
    """Pack the wheels' installable members into ``out/payload.tar.xz.NNN`` pieces and ``out/payload.json``.

    Args:
        wheels: wheel files, one version of each package (two versions of one package would overwrite each other).
        out: folder for the pieces and the manifest (earlier pieces there are removed first).
        piece_bytes: the largest piece, bytes.
        preset: xz preset (6: about 300 MB of xz from 420 MB of wheels, minutes on one core).
        shared: folders to carry too, by their name in the payload (e.g. ``{"shared/models": ../shared/models}``;
            ``../shared`` does not travel to the device): they land under the site folder there.

    Returns:
        The manifest: ``pieces`` (name, bytes, sha256, in order), ``wheels``, ``unpacked_bytes``, ``dropped_bytes``.

    Raises:
        ValueError: no wheels, or two wheels of the same package.
    """
    names = [w.name.split("-")[0].lower().replace("_", "-") for w in wheels]
    if not wheels or len(set(names)) != len(names):
        raise ValueError(f"gpu_payload | need one wheel per package, got {[w.name for w in wheels]}")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("payload.tar.xz.*"):
        old.unlink()
    buf, kept, dropped = io.BytesIO(), 0, 0
    with lzma.open(buf, "wb", preset=preset) as xz, tarfile.open(fileobj=xz, mode="w") as tar:
        for w in wheels:
            with zipfile.ZipFile(w) as z:
                for info in z.infolist():
                    name = site_name(info.filename)
                    if name is None:
                        dropped += info.file_size
                        continue
                    t = tarfile.TarInfo(name)
                    t.size, t.mode = info.file_size, (info.external_attr >> 16) & 0o777 or 0o644
                    tar.addfile(t, io.BytesIO(z.read(info)))
                    kept += info.file_size
        for arcname, folder in (shared or {}).items():
            tar.add(folder, arcname=arcname)
            files = [f for f in folder.rglob("*") if f.is_file()] if folder.is_dir() else [folder]
            kept += sum(f.stat().st_size for f in files)
    data, step = buf.getvalue(), piece_bytes
    pieces = []
    for i in range(0, len(data), step):
        p = out / f"payload.tar.xz.{i // step:03d}"
        p.write_bytes(data[i : i + step])
        pieces.append({"name": p.name, "bytes": p.stat().st_size, "sha256": sha256(p)})
    manifest = {"pieces": pieces, "wheels": [w.name for w in wheels], "unpacked_bytes": kept, "dropped_bytes": dropped}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def take(src: Path, store: Path = STORE, site: Path = SITE) -> int:
    """Move the pieces carried into ``src`` to ``store``; unpack into ``site`` once all are there.

    Returns:
        0: complete (now or before) and unpacked; 3: pieces still missing (printed); 2: no manifest in ``src``; 1: a piece's sha256 is wrong
        (it is deleted so that the next call can carry it again).
    """
    if not (src / MANIFEST).exists():
        print(f"gpu_payload | {src / MANIFEST} is missing: carry it with every piece", file=sys.stderr)
        return 2
    manifest = json.loads((src / MANIFEST).read_text())
    done = site / ".payload.json"
    if done.exists() and json.loads(done.read_text()) == manifest:
        print(f"gpu_payload | complete: {site}")
        return 0
    store.mkdir(parents=True, exist_ok=True)
    for piece in manifest["pieces"]:  # every carried piece is kept first: a bad one does not lose the others
        carried = src / piece["name"]
        if carried.exists():
            shutil.move(str(carried), store / piece["name"])
    bad = [p["name"] for p in manifest["pieces"] if (store / p["name"]).exists() and sha256(store / p["name"]) != p["sha256"]]
    for name in bad:
        (store / name).unlink()
        print(f"gpu_payload | {name}: sha256 differs from the manifest (damaged, or of an older payload); carry it again", file=sys.stderr)
    if bad:
        return 1
    missing = [p["name"] for p in manifest["pieces"] if not (store / p["name"]).exists()]
    if missing:
        print(f"gpu_payload | {len(manifest['pieces']) - len(missing)} of {len(manifest['pieces'])} pieces here; carry next: {missing}")
        return 3
    shutil.rmtree(site, ignore_errors=True)  # an older payload's files do not linger
    site.mkdir(parents=True)
    with _Joined([store / p["name"] for p in manifest["pieces"]]) as joined, tarfile.open(fileobj=joined, mode="r|xz") as tar:
        tar.extractall(site, filter="data")
    done.write_text(json.dumps(manifest))
    print(f"gpu_payload | complete: {len(manifest['wheels'])} packages unpacked into {site}")
    return 0


class _Joined(io.RawIOBase):
    """The pieces read one after another as one stream."""

    def __init__(self, paths: list[Path]) -> None:
        self._files = [p.open("rb") for p in paths]
        self._i = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        while self._i < len(self._files):
            n = self._files[self._i].readinto(b)
            if n:
                return n
            self._i += 1
        return 0

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def env(site: Path = SITE) -> str:
    """Shell lines that put ``site`` and this checkout first on ``PYTHONPATH`` (scripts and Ray's workers import the
    uninstalled ``ferbatch`` from there) and PyTorch's CUDA libraries on ``LD_LIBRARY_PATH``."""
    libs: list[str] = []
    try:
        import nvidia  # PyTorch's nvidia-* wheels (cuBLAS, cuDNN, cuFFT, ...), a namespace package

        for root in nvidia.__path__:
            libs += sorted(str(d) for d in Path(root).glob("*/lib") if d.is_dir())
    except ImportError:
        pass
    old = os.environ.get("LD_LIBRARY_PATH", "")
    paths = [str(site), str(Path(__file__).resolve().parent.parent)]  # the packages, then this checkout's ferbatch
    paths += [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    return "\n".join(
        [f"export PYTHONPATH={shlex.quote(os.pathsep.join(paths))}"]
        + ([f"export LD_LIBRARY_PATH={shlex.quote(os.pathsep.join(libs + ([old] if old else [])))}"] if libs else [])
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help="pip download the pinned wheels for the device's Python")
    d.add_argument("--wheels", type=Path, default=Path(".whl/wheels"))
    p = sub.add_parser("pack", help="pack the wheels into pieces and a manifest")
    p.add_argument("--wheels", type=Path, default=Path(".whl/wheels"))
    p.add_argument("--out", type=Path, default=Path(".whl"))
    p.add_argument("--piece-mib", type=int, default=PIECE_MIB)
    p.add_argument("--shared", type=Path, default=None, help="../shared: carry its models/ and data/videos_faces/ too")
    p.add_argument("--ferplus", action="store_true", help="with --shared: also data/ferplus/FER2013Train.tar.gz (teachers)")
    t = sub.add_parser("take", help="on the device: keep the carried pieces; unpack once complete")
    t.add_argument("src", type=Path, nargs="?", default=Path(".whl"))
    t.add_argument("--store", type=Path, default=STORE)
    t.add_argument("--site", type=Path, default=SITE)
    e = sub.add_parser("env", help="print the export lines for the unpacked packages")
    e.add_argument("--site", type=Path, default=SITE)
    a = ap.parse_args()
    if a.cmd == "download":
        print("\n".join(w.name for w in download(a.wheels)))
    elif a.cmd == "pack":
        shared = {}
        if a.shared:
            shared = {f"shared/{x}": a.shared / x for x in SHARED + (FERPLUS if a.ferplus else ())}
        m = pack(sorted(a.wheels.glob("*.whl")), a.out, a.piece_mib << 20, shared=shared)
        print(f"{len(m['pieces'])} pieces, {sum(x['bytes'] for x in m['pieces']) >> 20} MiB (unpacked {m['unpacked_bytes'] >> 20} MiB)")
    elif a.cmd == "take":
        return take(a.src, a.store, a.site)
    else:
        print(env(a.site))
    return 0


if __name__ == "__main__":
    sys.exit(main())
