"""TensorRT engine building and caching (GPU only; imported lazily, never on the CPU path).

An engine ("plan") is built from a prepared ONNX graph (:mod:`ferbatch.models.graphs`) with one
optimization profile for the batch dimension, a timing cache reused across builds, and a
workspace limit. Precision lives in the ONNX graph (TensorRT 11 is strongly typed and has no
``BuilderFlag.FP16``; on TensorRT 10 the network is created ``STRONGLY_TYPED`` so both behave the
same). Plans are keyed by everything that makes them unportable: the ONNX sha256, precision,
profile, TensorRT version, CUDA major, GPU name and compute capability (DESIGN_NOTES 1.4). The key
is in the file name and in a JSON sidecar; a plan whose sidecar key differs, or that does not
deserialize, is rebuilt with a log line saying why. Builds take a file lock so several workers on
one node never build the same engine at once, and write through a temp file + rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ferbatch.atomic import write_bytes_atomic
from ferbatch.errors import ConfigError, ModelError

__all__ = ["EngineKey", "engine_key", "engine_paths", "build_or_load_plan", "gpu_available", "require_tensorrt", "DEFAULT_ENGINES_DIR"]

log = logging.getLogger(__name__)
# a checkout keeps built plans in its engines/built/ (git-ignored); an installed package in the user cache
_CHECKOUT_ENGINES = Path(__file__).resolve().parents[2] / "engines"
DEFAULT_ENGINES_DIR = _CHECKOUT_ENGINES / "built" if (_CHECKOUT_ENGINES / "README.md").is_file() else None
WORKSPACE_BYTES = 1 << 30


@dataclass(frozen=True)
class EngineKey:
    """What a plan depends on. Shapes are (min, opt, max) of the one input."""

    model: str
    onnx_sha256: str
    precision: str
    input_name: str
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    trt: str
    cuda_major: int
    gpu: str
    compute_capability: str
    workspace: int = WORKSPACE_BYTES
    tf32: bool = True  # False for parity builds: fp32 kernels without TF32 agree with ONNX Runtime to float noise

    def digest(self) -> str:
        """16 hex of the sha256 of the key's JSON."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def file_stem(self) -> str:
        """Human-readable and unique: ``<model>-<precision>-b<max>-trt<ver>-sm<cc>-<digest>``."""
        cc = self.compute_capability.replace(".", "")
        return f"{self.model}-{self.precision}-b{self.profile[2][0]}-trt{self.trt}-sm{cc}-{self.digest()}"


def require_tensorrt():
    """Import tensorrt and pycuda.driver, or raise a ConfigError naming the extra to install."""
    try:
        import pycuda.driver as cuda
        import tensorrt as trt
    except ImportError as e:
        raise ConfigError(
            f"--backend tensorrt | needs the 'tensorrt' and 'pycuda' packages (pip install 'ferbatch[gpu]'); import failed: {e}"
        ) from e
    return trt, cuda


def gpu_available() -> tuple[bool, str]:
    """(True, GPU name) when TensorRT, pycuda and a CUDA device are all present; else (False, why)."""
    try:
        trt, cuda = require_tensorrt()
    except ConfigError as e:
        return False, str(e).split("|", 1)[-1].strip()
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            return False, "no CUDA device"
        return True, cuda.Device(0).name()
    except Exception as e:  # pycuda.driver.Error subclasses: no driver, no device
        return False, f"CUDA is not usable: {e}"


def engine_key(
    model: str,
    onnx_path: str | os.PathLike[str],
    precision: str,
    input_name: str,
    chw: tuple[int, int, int],
    max_batch: int,
    opt_batch: int | None = None,
    *,
    tf32: bool = True,
) -> EngineKey:
    """The key of the plan for ``onnx_path`` on this machine's GPU 0 and TensorRT.

    Raises:
        ConfigError: TensorRT/pycuda missing.
    """
    trt, cuda = require_tensorrt()
    from ferbatch.models.registry import sha256_file

    cuda.init()
    dev = cuda.Device(0)
    cc = ".".join(str(v) for v in dev.compute_capability())
    opt = opt_batch or max(1, max_batch // 2)
    profile = ((1, *chw), (opt, *chw), (max_batch, *chw))
    return EngineKey(
        model, sha256_file(onnx_path), precision, input_name, profile, trt.__version__, trt_cuda_major(cuda), dev.name(), cc, tf32=tf32
    )


def trt_cuda_major(cuda) -> int:
    """The CUDA major version TensorRT was built for (what a plan depends on), from the installed
    ``tensorrt-cuXX-libs`` distribution; else the CUDA toolkit pycuda was built against; the
    driver's version (which can be newer) only as the last resort."""
    from importlib import metadata

    for major in (13, 12, 11):
        for name in (f"tensorrt-cu{major}-libs", f"tensorrt_cu{major}_libs", f"tensorrt-cu{major}"):
            try:
                metadata.version(name)
                return major
            except metadata.PackageNotFoundError:
                continue
    try:
        return int(cuda.get_version()[0])
    except (AttributeError, TypeError, IndexError):
        return int(cuda.get_driver_version() // 1000)


def engine_paths(key: EngineKey, engines_dir: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """(plan path, JSON sidecar path) for ``key``."""
    from ferbatch.models.registry import cache_dir

    d = Path(engines_dir or os.environ.get("FERBATCH_ENGINES") or DEFAULT_ENGINES_DIR or cache_dir() / "engines")
    return d / f"{key.file_stem()}.plan", d / f"{key.file_stem()}.json"


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _plan_ok(trt, plan: Path, sidecar: Path, key: EngineKey) -> bool:
    if not plan.is_file() or not sidecar.is_file():
        return False
    try:
        stored = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError):
        log.warning("rebuilding %s: its sidecar is unreadable", plan.name)
        return False
    expected = json.loads(json.dumps(asdict(key)))  # tuples -> lists, as stored
    if stored != expected:
        diff = sorted(k for k in expected if stored.get(k) != expected[k])
        log.warning("rebuilding %s: built for another %s", plan.name, ", ".join(diff))
        return False
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan.read_bytes())
    if engine is None:
        log.warning("rebuilding %s: TensorRT cannot deserialize it (another GPU or TensorRT version?)", plan.name)
        return False
    return True


def build_or_load_plan(onnx_path: str | os.PathLike[str], key: EngineKey, engines_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return a plan for ``key``, building it (under a file lock) when missing or stale.

    Raises:
        ModelError: the ONNX parser or the builder fails (the parser's errors are in the message).
    """
    trt, _ = require_tensorrt()
    plan, sidecar = engine_paths(key, engines_dir)
    with _locked(plan):
        if _plan_ok(trt, plan, sidecar, key):
            return plan
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        flags = 0
        if int(trt.__version__.split(".")[0]) == 10:  # precision from the ONNX types, as 11.x always does
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelError(f"{onnx_path} | TensorRT's ONNX parser refused it: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, key.workspace)
        if not key.tf32:
            config.clear_flag(trt.BuilderFlag.TF32)
        profile = builder.create_optimization_profile()
        profile.set_shape(key.input_name, min=key.profile[0], opt=key.profile[1], max=key.profile[2])
        config.add_optimization_profile(profile)
        cache_file = plan.parent / f"timing-trt{key.trt}-sm{key.compute_capability.replace('.', '')}.cache"
        cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ModelError(f"{onnx_path} | TensorRT could not build an engine (see the log above)")
        write_bytes_atomic(plan, bytes(serialized))
        write_bytes_atomic(sidecar, json.dumps(asdict(key), indent=1, sort_keys=True).encode())
        write_bytes_atomic(cache_file, bytes(config.get_timing_cache().serialize()))
        log.info("built %s", plan.name)
        return plan
