"""Workers: the actor that owns a detector + classifier and runs shards, and the pools that run it
in-process or on Ray actors with retries.

Scheduling is a hand-rolled ``ray.wait`` loop over explicit actors rather than ``ActorPool`` or
Ray Data: each actor owns its models (loaded once in ``__init__``), takes one shard per call and
writes that shard's part files itself, and the loop sees which actor died with which shard so it
can start a replacement and retry the shard a bounded number of times (DESIGN_NOTES 5.1-5.2).
"""

from __future__ import annotations

import copy
import logging
import os
import queue
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, Protocol

from ferbatch.config import JobConfig
from ferbatch.errors import ConfigError, DecodeError, FerbatchError, JobAborted
from ferbatch.job.inputs import VideoTask
from ferbatch.job.ray_start import init_ray
from ferbatch.job.sizing import Placement
from ferbatch.media.decoders import check_decoder, choose_decoder, stream_format
from ferbatch.media.probe import VideoIndex, VideoInfo, probe_video
from ferbatch.media.shards import Shard
from ferbatch.models.frame_graphs import device_frames_available, frame_pictures
from ferbatch.models.load import Models, load_models
from ferbatch.pipeline import FrameSettings, ShardResult, run_shard

__all__ = ["ShardWorker", "WorkerPool", "LocalPool", "RayPool", "init_ray", "MAX_ATTEMPTS"]


log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3  # tries per shard when its worker process dies
STARTUP_TIMEOUT_S = 120  # worker actors must be placed and have loaded their models by then
GPU_STARTUP_TIMEOUT_S = 900  # ... or built their TensorRT engines (under the node's file lock)

# (item, result, error): exactly one of result and error is None
PoolItem = tuple[Any, Any, "FerbatchError | None"]


class WorkerPool(Protocol):
    """Runs a :class:`ShardWorker` method over items and yields ``(item, result, error)`` as they finish.

    Attributes:
        backends: the backend each distinct worker reported ("onnxruntime (requested)").
        deaths: worker processes that died under a call (retried).
    """

    backends: list[str]
    deaths: int

    def map(self, method: str, items: Iterable[Any], *args: Any) -> Iterator[PoolItem]:
        """Call ``worker.method(item, *args)`` for each item; a failure of one item is yielded as its error."""
        ...

    def close(self) -> None:
        """Stop the workers and free their models."""
        ...


class ShardWorker:
    """Owns one detector + classifier and processes shards (a Ray actor, or a plain object).

    Args:
        cfg: the job config.
        threads: ONNX Runtime threads for this worker.
        env: environment variables to set first (the model mirror, made absolute by the driver).
    """

    def __init__(self, cfg: JobConfig, threads: int, env: dict[str, str] | None = None):
        os.environ.update(env or {})
        import cv2

        cv2.setNumThreads(threads)  # resize/colour conversion stay within this worker's share of cores
        self.cfg = cfg
        self.threads = threads
        check_decoder(cfg.decoder)  # --decoder nvdec without PyNvVideoCodec: refused before any work
        self.models: Models = load_models(cfg, threads=threads)
        self._device_frames: bool | None = None  # NVDEC frames can stay on the GPU (asked once, when it matters)

    def probe(self, task: VideoTask) -> tuple[VideoInfo | None, VideoIndex | None, str]:
        """Index a video; returns (info, index, "") or (None, None, error message)."""
        try:
            info, index = probe_video(task.path)
        except DecodeError as e:
            return None, None, e.reason
        return info, index, ""

    def decoder_for(self, path: str) -> tuple[str, str]:
        """(decoder, reason) for a video (:func:`ferbatch.media.decoders.choose_decoder` with this
        worker's backend); the stream's format is read only when the choice depends on it, and a
        stream that cannot be read gets PyAV (whose error the shard then reports)."""

        def fmt():
            try:
                return stream_format(path)
            except DecodeError as e:
                return _Unreadable(e.reason)

        return choose_decoder(self.cfg.decoder, self.models.backend, fmt)

    def run(self, shard: Shard, out_dir: str) -> ShardResult:
        """Process one shard and write its part files; the result says which decoder ran and, when
        NVDEC was requested and the video fell back to PyAV, why (in its notes)."""
        c = self.cfg
        decoder, why = self.decoder_for(shard.path)
        res = run_shard(
            shard,
            self.models,
            out_dir,
            detect_batch=self.models.detect_batch,
            batch_pixels=c.batch_pixels(self.models.backend),
            prefetch=c.prefetch,
            decode_threads=c.decode_threads or self.threads,
            settings=FrameSettings.of(c),
            decoder=decoder,
            pictures=self.pictures_for(decoder),
        )
        res.decoder = res.decoder or decoder  # "pyav" already when NVDEC could not decode the file
        if c.decoder == "nvdec" and decoder != "nvdec":
            res.notes.append(why)
        return res

    def pictures_for(self, decoder: str) -> bool | str:
        """The frames a shard decoded by ``decoder`` is analysed from
        (:func:`ferbatch.models.frame_graphs.frame_pictures`): NV12 pictures where these models run
        the in-graph pre-processing (on the GPU with NVDEC and CuPy), else pictures for the host path."""
        if self._device_frames is None:
            self._device_frames = bool(self.models.takes_nv12 and device_frames_available()[0])
        return frame_pictures(self.models.takes_nv12, self.cfg.preprocess, decoder, self.models.backend, self._device_frames)

    def ping(self) -> str:
        """The backend this worker runs and why (returned once the models are loaded)."""
        return f"{self.models.backend} ({self.models.backend_reason})"

    def for_thread(self) -> ShardWorker:
        """A worker that another thread runs beside this one: this worker when its runners are
        thread-safe (ONNX Runtime), else one over the same loaded models with runners of its own
        (:meth:`ferbatch.models.load.Models.for_thread`).

        Raises:
            ModelError: a runner cannot be cloned.
        """
        models = self.models.for_thread()
        if models is self.models:
            return self
        twin = copy.copy(self)
        twin.models = models
        return twin


class _Unreadable:
    """The format of a stream that cannot be read (the choice then falls back to PyAV)."""

    def __init__(self, reason: str):
        self.codec, self.pix_fmt = f"unreadable ({reason})", ""


class LocalPool:
    """Runs worker calls in this process (no Ray) on ``n`` threads over one set of loaded models.

    ONNX Runtime sessions may be run from several threads at once, and FFmpeg and ONNX Runtime
    release the GIL, so ``n`` threads with single-threaded sessions use ``n`` cores like ``n``
    worker processes, without Ray's start-up. Runners that are not thread-safe (OpenVINO's infer
    request, TensorRT's execution context) are cloned: each of the ``n`` concurrent calls takes a
    worker of its own from a pool of ``n`` (:meth:`ShardWorker.for_thread`), which shares the
    loaded models. Results are yielded as they finish.

    Raises:
        ConfigError, ModelError: the worker cannot load its models or clone its runners.
    """

    def __init__(self, make_worker: Callable[[], ShardWorker], n: int = 1):
        self.worker = make_worker()
        self.n = max(1, int(n))
        self.backends = [self.worker.ping()]
        self.deaths = 0
        self._workers = [self.worker]  # one per concurrent call (the same object when thread-safe)
        try:
            self._workers += [self.worker.for_thread() for _ in range(self.n - 1)]
        except BaseException:
            self.close()
            raise
        self._idle: queue.SimpleQueue[ShardWorker] = queue.SimpleQueue()
        for w in self._workers:
            self._idle.put(w)

    def _call(self, method: str, it: Any, args: tuple) -> PoolItem:
        worker = self._idle.get()  # never waits: at most n calls run, and n workers are idle then
        try:
            return it, getattr(worker, method)(it, *args), None
        except DecodeError as e:  # this video's own problem: record it, go on
            return it, None, e
        except Exception as e:  # the machine's (disk full, out of memory) or a bug: stop the job
            raise _abort(e, it) from e
        finally:
            self._idle.put(worker)

    def map(self, method: str, items: Iterable[Any], *args: Any) -> Iterator[PoolItem]:
        if self.n == 1:
            for it in items:
                yield self._call(method, it, args)
            return
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        pending = iter(items)
        with ThreadPoolExecutor(self.n, thread_name_prefix="ferbatch-worker") as ex:
            running = {ex.submit(self._call, method, it, args) for it in islice(pending, self.n)}
            try:
                while running:
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        running |= {ex.submit(self._call, method, it, args) for it in islice(pending, 1)}
                        yield fut.result()
            finally:
                for fut in running:
                    fut.cancel()

    def close(self) -> None:
        """Free the threads' runner clones, then the loaded models."""
        for w in self._workers[1:]:
            if w.models is not self.worker.models:
                w.models.close()
        self.worker.models.close()


class RayPool:
    """Runs worker calls on Ray actors; replaces an actor that dies and retries its item."""

    def __init__(self, cfg: JobConfig, placement: Placement, env: dict[str, str]):
        import ray

        self.ray = ray
        n, threads = placement.workers, placement.ort_threads
        # an actor decodes on its own core; GPU workers share their GPU (fractional num_gpus)
        self.actor_cls = ray.remote(
            num_cpus=placement.cpus_per_worker, num_gpus=placement.gpus_per_worker, max_restarts=0, max_task_retries=0
        )(ShardWorker)
        self.args = (cfg, threads, env)
        self.actors: list[Any] = [self.actor_cls.remote(*self.args) for _ in range(n)]  # Ray actor handles
        self.deaths = 0  # worker processes that died under a call
        # surface model errors before any work; a worker that cannot be placed is an error too
        # GPU workers may build TensorRT engines at start (minutes): they get longer
        timeout = GPU_STARTUP_TIMEOUT_S if placement.on_gpu else STARTUP_TIMEOUT_S
        ready, waiting = ray.wait([a.ping.remote() for a in self.actors], num_returns=n, timeout=timeout)
        if waiting:
            free = ray.available_resources()
            self.close()
            advice = (
                "build the engines first (ferbatch build-engines) or lower --workers-per-gpu"
                if placement.on_gpu
                else f"the cluster has {free.get('CPU', 0):g} free CPUs; lower --workers"
            )
            raise ConfigError(f"--workers {n} | only {len(ready)} worker actors started within {timeout} s; {advice}")
        from ray.exceptions import RayActorError, RayTaskError

        try:
            self.backends = sorted(set(ray.get(ready)))
        except RayActorError as e:  # the worker process died while starting
            self.close()
            raise ConfigError(
                f"worker start-up | a worker process died while loading its models: {str(e).strip().splitlines()[0]}"
            ) from None
        except RayTaskError as e:  # ModelError, ConfigError from a worker's __init__: same message here
            self.close()
            cause = getattr(e, "cause", None)
            if isinstance(cause, FerbatchError):
                raise cause from None
            first = str(cause or e).strip().splitlines()[-1] if str(cause or e).strip() else type(cause or e).__name__
            raise ConfigError(f"worker start-up | failed: {first}") from None

    def map(self, method: str, items: Iterable[Any], *args: Any) -> Iterator[PoolItem]:
        ray = self.ray
        from ray.exceptions import RayActorError, RayTaskError

        pending = deque((it, 1) for it in items)
        idle = list(self.actors)
        running: dict = {}
        while pending or running:
            while idle and pending:
                it, attempt = pending.popleft()
                a = idle.pop()
                running[getattr(a, method).remote(it, *args)] = (a, it, attempt)
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                a, it, attempt = running.pop(ref)
                try:
                    yield it, ray.get(ref), None
                    idle.append(a)
                except RayActorError as e:
                    log.warning("worker died on %s (attempt %d/%d): %s", _label(it), attempt, MAX_ATTEMPTS, e)
                    self.deaths += 1
                    self.actors.remove(a)
                    new = self.actor_cls.remote(*self.args)
                    self.actors.append(new)
                    idle.append(new)
                    if attempt < MAX_ATTEMPTS:
                        pending.append((it, attempt + 1))
                    else:
                        yield it, None, FerbatchError(f"the worker process died {attempt} times on it")
                except RayTaskError as e:
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    if not isinstance(cause, DecodeError):  # the machine's or a bug: stop the job
                        raise _abort(cause, it) from e
                    idle.append(a)  # this video's own problem: record it, go on
                    yield it, None, cause

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)


def _abort(e: BaseException, item: Any) -> JobAborted:
    """The error that stops a job: an error of the machine (disk full, out of memory, I/O) or a
    bug, met while processing ``item``; its message says what happened and that finished work is
    kept."""
    what = str(e).splitlines()[0] if str(e) else type(e).__name__
    if not isinstance(e, FerbatchError):
        what = f"{type(e).__name__}: {what}"
    return JobAborted(f"{_label(item)} | the job stopped: {what}; finished shards are kept, rerun the same command to resume")


def _label(item) -> str:
    if isinstance(item, Shard):
        return f"{item.path} shard {item.shard_idx}"
    return getattr(item, "path", str(item))
