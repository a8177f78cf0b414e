"""How many workers a node runs and what each one gets: a pure function of the node's resources.

On the CPU each worker is one single-threaded pipeline on one core (measured faster than fewer
workers with more intra-op threads, docs/performance.md). On a GPU node the GPU is rarely the
bottleneck: decoding and the CPU work before the models are (about 6-9 ms per 720p frame on one
core), so one decoder per GPU leaves it idle. Several workers share each GPU (fractional
``num_gpus``), each decoding its shards on its own core and owning its runner; one core is left
to the driver. CUDA MPS lets those many small contexts run kernels concurrently (README).
"""

from __future__ import annotations

from dataclasses import dataclass

from ferbatch.config import GPU_BACKENDS
from ferbatch.errors import ConfigError

__all__ = ["NodeResources", "Placement", "plan_placement"]


@dataclass(frozen=True)
class NodeResources:
    """What the scheduler can give: logical CPUs and GPUs (Ray's ``available_resources``)."""

    cpus: int
    gpus: int = 0


@dataclass(frozen=True)
class Placement:
    """Workers and what each one gets.

    Attributes:
        workers: worker actors to start.
        cpus_per_worker: Ray ``num_cpus`` of each actor.
        gpus_per_worker: Ray ``num_gpus`` of each actor (a fraction when workers share a GPU; 0 on CPU).
        ort_threads: ONNX Runtime intra-op threads per worker.
        decode_threads: FFmpeg decoder threads per worker.
        on_gpu: the workers run a GPU backend.
    """

    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    ort_threads: int
    decode_threads: int
    on_gpu: bool


def plan_placement(
    node: NodeResources,
    backend: str,
    *,
    workers: int = 0,
    workers_per_gpu: int = 0,
    threads_per_worker: int = 0,
    items: int = 0,
) -> Placement:
    """Size the worker pool for ``node``.

    Args:
        node: the resources Ray reports for the job.
        backend: the requested backend ("auto", "onnxruntime", "onnxruntime-cuda", "tensorrt");
            "auto" places workers on GPUs when the node has any (each worker then probes which
            GPU backend its environment can run).
        workers: explicit worker count (0 = derived).
        workers_per_gpu: workers sharing one GPU (0 = the node's CPUs per GPU minus one for the
            driver, at least 1).
        threads_per_worker: explicit ONNX Runtime threads (0 = derived).
        items: work items known now (0 = unknown); never more workers than items.

    Returns:
        The placement.

    Raises:
        ConfigError: a GPU backend was asked for and the node has no GPU.
    """
    if node.cpus < 1:
        raise ConfigError(f"workers | the cluster offers {node.cpus} CPUs; at least 1 is needed")
    gpu = backend in GPU_BACKENDS or (backend == "auto" and node.gpus > 0)
    if gpu and node.gpus < 1:
        raise ConfigError(
            f"--backend {backend} | the cluster has no GPU (it reports {node.gpus} GPUs and {node.cpus} CPUs); "
            "use --backend onnxruntime or add GPU nodes"
        )
    if gpu:
        per_gpu = workers_per_gpu or max(1, node.cpus // node.gpus - 1)
        n = workers or node.gpus * per_gpu
        n = min(n, max(1, node.cpus - 1) if node.cpus > 1 else 1)  # one decoding core each, one for the driver
        n = min(n, items) if items else n
        share = max(1, -(-n // node.gpus))  # workers on the busiest GPU
        return Placement(n, 1.0, round(1.0 / share, 4), threads_per_worker or 1, 1, True)
    n = workers or node.cpus
    n = max(1, min(n, items) if items else n)
    threads = threads_per_worker or max(1, node.cpus // n)
    return Placement(n, 1.0, 0.0, threads, 1, False)
