"""Face detection preprocessing (pure NumPy/cv2) and the batched ``Detector``.

The ``Detector`` reads the in-graph outputs, or runs its spec's decoder
(:mod:`ferbatch.vision.decoders`, chosen by the registry's ``decoder`` key), never choosing one itself.
The registry's decoders:
- "ultraface" (Linzaer Ultra-Light-Fast-Generic-Face-Detector-1MB, RFB-320/640, slim-320): plain
  resize to the input size, RGB, (x - 127) / 128. NMS runs inside the prepared graph
  (:func:`ferbatch.models.graphs.prepare_detector`) or, as the fallback, in :func:`ferbatch.vision.boxes.nms` on the raw
  outputs; both give det_boxes (N, K, 4) / det_scores (N, K).
- "yunet" (OpenCV Zoo YuNet): letterboxed into the input size (top-left, zero padding), BGR 0..255
  (the prepared graph takes RGB: its first convolution's channels are reversed);
  per-stride outputs decoded as in OpenCV's ``FaceDetectorYN`` (score = sqrt(cls * obj),
  cx = (col + dx) * s, w = exp(dw) * s), then :func:`ferbatch.vision.boxes.nms`. Gives 5 landmarks per face.
  The prepared graph does the same decoding and NMS inside (outputs det_boxes / det_scores /
  det_landmarks); this NumPy decoding is the fallback (``in_graph_nms=False``) and the reference.

With in-graph NMS the score threshold is the graph's optional input ``score_threshold``: the
``Detector`` feeds its threshold (or ``min_score``) on every call when the runner takes it (ONNX
Runtime); a runner that cannot (TensorRT folds it into a constant) keeps the graph's default as a
floor and the Detector drops scores at or under a higher ``min_score`` itself (the same faces: greedy
NMS never lets a lower score suppress a higher one).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence

import cv2
import numpy as np

from ferbatch.colour import BT601, fixed_point
from ferbatch.errors import ConfigError
from ferbatch.faces import FaceBatch
from ferbatch.picture import Image, Nv12Picture, YuvPicture, as_rgb, host_picture, linear_taps, stack_nv12
from ferbatch.specs import DetectorDecoder, InputSpec, ModelSpec, Runner
from ferbatch.vision.decoders import postprocess_raw  # re-exported (tests)

__all__ = [
    "Detector",
    "letterbox_size",
    "NV12_PLANES",
    "NV12_TABLES",
    "NV12_COLOUR",
    "nv12_letterbox_inputs",
    "preprocess_frames",
    "postprocess_raw",
    "DET_BOXES",
    "DET_LANDMARKS",
    "DET_SCORES",
    "SCORE_THRESHOLD",
]

# output names of a detector graph with in-graph NMS (the contract ferbatch.models.graphs builds to)
DET_BOXES, DET_SCORES, DET_LANDMARKS = "det_boxes", "det_scores", "det_landmarks"
# its optional input: float32 (1,) score threshold, default built in (an initializer of that name)
SCORE_THRESHOLD = "score_threshold"


def letterbox_size(frame_wh: tuple[int, int], input_wh: tuple[int, int]) -> tuple[int, int]:
    """(nw, nh): the size in pixels a ``frame_wh`` frame is resized to inside a ``input_wh``
    letterboxed input, ``r = min(w / W, h / H)``, each side rounded, at least 1 (the one
    definition: :func:`preprocess_frames` and :func:`ferbatch.models.graph_nv12.letterbox_sizes`)."""
    (fw, fh), (w, h) = frame_wh, input_wh
    r = min(w / fw, h / fh)
    return max(1, round(fw * r)), max(1, round(fh * r))


# the NV12 detector graph's inputs (ferbatch.models.graph_nv12 builds to them): the frames, then per
# plane and axis OpenCV's resize taps, each (n, 2) int64 with an int32 "_w" twin, and the input size
NV12_PLANES = "planes"
NV12_TABLES = ("luma_cols", "luma_rows", "chroma_cols", "chroma_rows")
NV12_COLOUR = "colour"  # (13,) int32: the frames' YUV -> RGB coefficients (ferbatch.colour.fixed_point)


def nv12_letterbox_inputs(frame_wh: tuple[int, int], input_wh: tuple[int, int], matrix: str = BT601) -> dict[str, np.ndarray] | None:
    """The NV12 detector graph's inputs besides the planes (:mod:`ferbatch.models.graph_nv12`) for
    ``frame_wh`` frames of a ``matrix`` (:data:`ferbatch.colour.MATRICES`) letterboxed into ``input_wh``:
    :func:`linear_taps` of the luma plane to the letterboxed size (:func:`letterbox_size`) and of the
    chroma planes to half of it, the input size, and the colour conversion's coefficients.

    Returns:
        ``{"luma_cols", "luma_rows", "chroma_cols", "chroma_rows"}`` (n, 2) int64 source indices,
        the same names + ``_w`` (n, 2) int32 weights, ``"input_hw"`` (2,) int64 ``(h, w)``,
        ``"colour"`` (13,) int32 (:func:`ferbatch.colour.fixed_point`); None when a side is odd
        (4:2:0 planes: the host path converts at full size then).
    """
    (fw, fh), (w, h) = frame_wh, input_wh
    nw, nh = letterbox_size(frame_wh, input_wh)
    if fw % 2 or fh % 2 or nw % 2 or nh % 2:
        return None
    out = {"input_hw": np.array([h, w], np.int64), NV12_COLOUR: fixed_point(matrix)}
    for plane, k in (("luma", 1), ("chroma", 2)):
        for axis, src, dst in (("cols", fw, nw), ("rows", fh, nh)):
            idx, wt = linear_taps(src // k, dst // k, rows=axis == "rows")
            out[f"{plane}_{axis}"], out[f"{plane}_{axis}_w"] = idx, wt
    assert set(NV12_TABLES) <= set(out)
    return out


def preprocess_frames(
    frames: Sequence[Image], spec: InputSpec, letterbox: bool = False, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Resize RGB frames to the detector's input (OpenCV ``INTER_LINEAR``), still RGB.

    The prepared graph normalises the uint8 pixels and takes RGB whatever the network's colour order
    (:func:`ferbatch.models.graphs.prepend_uint8_input`, :func:`ferbatch.models.graphs.fold_channel_reversal`),
    so this is the only per-frame pixel work before the model. A letterboxed frame that already has
    the input's scale (a 1280x720 frame in a 1280x736 input) is copied, not resized, and only the
    padding is zeroed.

    Args:
        frames: F arrays (H, W, 3) uint8 RGB, :class:`ferbatch.picture.YuvPicture` (resized in
            its planes, then converted) or :class:`ferbatch.picture.Nv12Picture` (its host planes);
            sizes may differ.
        spec: the detector's input spec (w x h).
        letterbox: keep the aspect ratio (pad right/bottom with zeros) instead of a plain resize.
        out: (>= F, h, w, 3) uint8 C-contiguous buffer to fill and return a view of (a batch
            buffer reused between calls: no allocation and page faults per batch); None allocates.

    Returns:
        x: (F, h, w, 3) uint8 RGB input tensor (a view of ``out`` when given).
        scale: (F, 2) float32 factors that map input pixels back to frame pixels (sx, sy).
    """
    w, h = spec.width, spec.height
    n = len(frames)
    buf = np.empty((n, h, w, 3), np.uint8) if out is None else out[:n]
    scale = np.empty((n, 2), np.float32)
    for i, frame in enumerate(frames):
        f = host_picture(frame)
        fh, fw = f.shape[:2]
        if letterbox:
            nw, nh = letterbox_size((fw, fh), (w, h))
            if (nw, nh) == (fw, fh):
                buf[i, :nh, :nw] = as_rgb(f)
            elif isinstance(f, YuvPicture):
                buf[i, :nh, :nw] = f.resized_rgb(nw, nh)
            else:
                cv2.resize(f, (nw, nh), dst=buf[i, :nh, :nw], interpolation=cv2.INTER_LINEAR)
            buf[i, nh:] = 0
            buf[i, :nh, nw:] = 0
            scale[i] = (fw / nw, fh / nh)
        else:
            if isinstance(f, YuvPicture):
                buf[i] = f.resized_rgb(w, h)
            else:
                cv2.resize(f, (w, h), dst=buf[i], interpolation=cv2.INTER_LINEAR)
            scale[i] = (fw / w, fh / h)
    return buf, scale


class Detector:
    """Batched face detector over a runner.

    Args:
        runner: runs the prepared detector graph.
        spec: the registry entry.
        in_graph_nms: the graph outputs det_boxes/det_scores (and det_landmarks for YuNet),
            decoded and suppressed inside (:func:`ferbatch.models.graphs.prepare_detector`); False
            runs the NumPy fallback on the raw outputs.
        max_faces: K, the most faces kept per frame (must match the graph's when in_graph_nms).
        score_threshold, iou_threshold: override the registry's values (the IoU threshold must
            match the graph's when in_graph_nms; the score threshold is fed to the graph's
            ``score_threshold`` input when the runner takes it, else the graph's is the floor).
        nv12_runner: an ONNX Runtime runner (:class:`ferbatch.models.runners.onnxruntime.OrtRunner`)
            over the same graph with the NV12 front (:func:`ferbatch.models.graph_nv12.prepare_nv12_detector`):
            a batch of :class:`ferbatch.picture.Nv12Picture` frames of one size goes through it,
            letterboxed and converted inside the graph, where the frames lie (a GPU's memory bound
            through DLPack); None, or other frames: the host path.
    """

    def __init__(
        self,
        runner: Runner,
        spec: ModelSpec,
        *,
        in_graph_nms: bool = True,
        max_faces: int = 64,
        score_threshold: float | None = None,
        iou_threshold: float | None = None,
        nv12_runner=None,
    ):
        if spec.kind != "detector":
            raise ConfigError(f"model {spec.name} | is a {spec.kind}; expected a detector")
        if spec.decoder is None:
            raise ConfigError(f"detector {spec.name} | has no decoder; load it through the registry (its `decoder` key)")
        self.decoder: DetectorDecoder = spec.decoder
        self.runner = runner
        self.spec = spec
        self.in_graph_nms = in_graph_nms and spec.nms_in_graph
        self.max_faces = max_faces
        self.score_threshold = spec.score_threshold if score_threshold is None else score_threshold
        self.iou_threshold = spec.iou_threshold if iou_threshold is None else iou_threshold
        self._local = threading.local()
        # the graph's optional score_threshold input, when this runner can feed it (ONNX Runtime)
        feedable = tuple(runner.input_names) + tuple(getattr(runner, "optional_input_names", ()))
        self._feeds_threshold = self.in_graph_nms and SCORE_THRESHOLD in feedable
        self.nv12_runner = nv12_runner if spec.letterbox else None
        self.frames_in_graph = 0  # frames letterboxed and converted inside the NV12 graph (a count for tests and benchmarks)
        self._count = threading.Lock()

    @property
    def gives_landmarks(self) -> bool:
        """True when detections carry 5 landmarks (YuNet)."""
        return self.spec.gives_landmarks

    def thread_frames(self) -> tuple[int, int]:
        """(frames pre-processed inside the NV12 graph, frames pre-processed on the host) by the
        calling thread's :meth:`detect` and :meth:`detect_resized` calls so far. Threads may share a
        detector and a shard runs on one thread, so the difference over a shard says where its
        detector inputs were pre-processed (the ``videos`` table's ``preprocess``)."""
        return getattr(self._local, "in_graph", 0), getattr(self._local, "on_host", 0)

    def _tally(self, in_graph: int = 0, on_host: int = 0) -> None:
        loc = self._local
        loc.in_graph, loc.on_host = getattr(loc, "in_graph", 0) + in_graph, getattr(loc, "on_host", 0) + on_host

    def _batch_buffer(self, n: int) -> np.ndarray:
        """This thread's reused input buffer, (>= n, h, w, 3) uint8 (threads may share a detector)."""
        buf = getattr(self._local, "buf", None)
        if buf is None or len(buf) < n:
            buf = self._local.buf = np.empty((max(n, 1), self.spec.input.height, self.spec.input.width, 3), np.uint8)
        return buf

    def detect(self, frames: Sequence[Image], min_score: float | None = None) -> FaceBatch:
        """Find faces in a batch of frames.

        Args:
            frames: F arrays (H, W, 3) uint8 RGB, :class:`ferbatch.picture.YuvPicture` or
                :class:`ferbatch.picture.Nv12Picture` (a chunk of NV12 pictures of one size goes
                through :attr:`nv12_runner` where there is one; any other frame takes the host path).
            min_score: keep detections scored above this instead of ``score_threshold`` (the
                tracker's low stage asks for weaker ones); with NMS inside the graph it is fed to
                the graph's ``score_threshold`` input (ONNX Runtime); on a runner that cannot feed
                it (TensorRT) the graph's built-in threshold stays the floor.

        Returns:
            FaceBatch with boxes in each frame's pixels.
        """
        step = self.runner.max_batch or max(1, len(frames))
        parts = []
        for i in range(0, len(frames), step):
            chunk = frames[i : i + step]
            nv12_inputs = self._nv12_feed(chunk)
            if nv12_inputs is not None:
                parts.append(self._run_nv12(nv12_inputs, chunk, i, min_score))
                continue
            x, scale = preprocess_frames(chunk, self.spec.input, letterbox=self.spec.letterbox, out=self._batch_buffer(len(chunk)))
            self._tally(on_host=len(chunk))
            sizes = np.array([[f.shape[1], f.shape[0]] for f in frames[i : i + step]], np.float32)
            parts.append(self._run(x, scale, sizes, i, min_score))
        return self._join(parts)

    def detect_resized(self, x: np.ndarray, sizes: np.ndarray, min_score: float | None = None) -> FaceBatch:
        """Find faces in frames already resized to the detector's input (plain resize, no letterbox).

        Args:
            x: (F, h, w, 3) uint8 RGB at the detector's input size (e.g. made by swscale while decoding).
            sizes: (F, 2) source frame sizes (width, height) in pixels; boxes come back in those pixels.
            min_score: as in :meth:`detect`.

        Returns:
            FaceBatch with boxes in each source frame's pixels.

        Raises:
            ConfigError: the detector letterboxes its input (YuNet): give full frames to :meth:`detect`.
        """
        spec = self.spec.input
        if self.spec.letterbox:
            raise ConfigError(f"detector {self.spec.name} | letterboxes its input; pass full frames to detect()")
        sizes = np.asarray(sizes, np.float32).reshape(-1, 2)
        scale = sizes / np.array([spec.width, spec.height], np.float32)
        step = self.runner.max_batch or max(1, len(x))
        self._tally(on_host=len(x))  # resized by the decoder: host pre-processing
        return self._join(
            [self._run(x[i : i + step], scale[i : i + step], sizes[i : i + step], i, min_score) for i in range(0, len(x), step)]
        )

    def _join(self, parts: list[FaceBatch]) -> FaceBatch:
        return FaceBatch.merge(parts) if parts else FaceBatch.empty(self.gives_landmarks)

    def _nv12_feed(self, chunk: Sequence[Image]) -> dict | None:
        """The NV12 graph's inputs besides the planes for a chunk of :class:`Nv12Picture` frames of
        one size and matrix (:func:`nv12_letterbox_inputs`); None when the chunk takes the host path
        (no NV12 runner, other frames, sizes or matrices that differ, an odd side)."""
        pics = [f for f in chunk if isinstance(f, Nv12Picture)]
        if self.nv12_runner is None or not chunk or len(pics) != len(chunk) or len({(f.shape, f.matrix) for f in pics}) != 1:
            return None
        frame_wh, input_wh = (chunk[0].shape[1], chunk[0].shape[0]), (self.spec.input.width, self.spec.input.height)
        inputs = _nv12_inputs(frame_wh, input_wh, pics[0].matrix)
        if inputs is None and any(isinstance(f, Nv12Picture) and f.on_device for f in chunk) and (frame_wh, input_wh) not in _warned:
            _warned.add((frame_wh, input_wh))
            nw, nh = letterbox_size(frame_wh, input_wh)
            log.warning(
                "%dx%d frames letterbox to %dx%d, an odd side the NV12 graph cannot resize: they are copied to the host and pre-processed there",
                *frame_wh,
                nw,
                nh,
            )
        return inputs

    def _run_nv12(self, inputs: dict, chunk: Sequence[Image], offset: int, min_score: float | None) -> FaceBatch:
        """Run a chunk of NV12 pictures through :attr:`nv12_runner` (the frames bound where they lie:
        :meth:`ferbatch.models.runners.onnxruntime.OrtRunner.infer_bound`); as :meth:`_run`."""
        pics = [f for f in chunk if isinstance(f, Nv12Picture)]
        fh, fw = pics[0].height, pics[0].width
        nh, nw = len(inputs["luma_rows"]), len(inputs["luma_cols"])
        feed = {NV12_PLANES: stack_nv12(pics), **inputs}
        with self._count:
            self.frames_in_graph += len(pics)
        self._tally(in_graph=len(pics))
        scale = np.tile(np.array([[fw / nw, fh / nh]], np.float32), (len(pics), 1))
        sizes = np.tile(np.array([[fw, fh]], np.float32), (len(pics), 1))
        return self._run(feed, scale, sizes, offset, min_score, runner=self.nv12_runner)

    def _run(
        self, x: np.ndarray | dict, scale: np.ndarray, sizes: np.ndarray, offset: int, min_score: float | None = None, runner=None
    ) -> FaceBatch:
        """Run one batch and map its faces to frame pixels.

        Args:
            x: (F, h, w, 3) uint8 model input, or the NV12 graph's feed (``planes`` and sizes) for ``runner``.
            scale: (F, 2) float32 input pixels -> frame pixels (sx, sy).
            sizes: (F, 2) float32 frame width, height in pixels (boxes are clipped to them).
            offset: index of ``x[0]`` in the caller's batch (added to ``frame_pos``).
            min_score: the score threshold of this call (None: ``score_threshold``).
            runner: :attr:`nv12_runner` for an NV12 feed (run through ``infer_bound``); None = :attr:`runner`.

        Returns:
            FaceBatch; boxes clipped to the frame, those clipped to under 1 px dropped.
        """
        spec = self.spec.input
        thr = self.score_threshold if min_score is None else min_score
        lm = self.decoder.gives_landmarks
        feed = dict(x) if isinstance(x, dict) else {spec.name: x}
        if self._feeds_threshold:
            feed[SCORE_THRESHOLD] = np.array([thr], np.float32)
        out = self.runner.infer(feed) if runner is None else runner.infer_bound(feed)
        dk = None
        if self.in_graph_nms:
            db, ds = out[DET_BOXES], out[DET_SCORES]
            if not self._feeds_threshold and thr > self.score_threshold:  # the graph kept down to its own threshold
                ds = np.where(ds > thr, ds, np.float32(0))
            size = np.array([spec.width, spec.height], np.float32)  # graph outputs are normalised to the input
            db = db * np.tile(size * scale, 2)[:, None, :]
            if lm:
                dk = out[DET_LANDMARKS] * (size * scale)[:, None, None, :]
        else:  # the NumPy post-processing of this detector's own decoder (input pixels)
            db, ds, dk = self.decoder.decode(out, self.spec, thr, self.iou_threshold, self.max_faces)
            db = db * np.tile(scale, 2)[:, None, :]
            if dk is not None:
                dk = dk * scale[:, None, None, :]
        pos, slot = np.nonzero(ds > 0)
        boxes = db[pos, slot].astype(np.float32)
        boxes = np.clip(boxes, 0, np.tile(sizes[pos], 2))
        ok = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)  # drop boxes clipped to nothing
        lms = None if dk is None else dk[pos, slot][ok].astype(np.float32)
        return FaceBatch((pos[ok] + offset).astype(np.int32), boxes[ok], ds[pos, slot][ok].astype(np.float32), lms)


@functools.lru_cache(maxsize=32)
def _nv12_inputs(frame_wh: tuple[int, int], input_wh: tuple[int, int], matrix: str) -> dict[str, np.ndarray] | None:
    """:func:`nv12_letterbox_inputs` per (frame size, input size, matrix), a few KB each, read-only (threads share them)."""
    out = nv12_letterbox_inputs(frame_wh, input_wh, matrix)
    for a in (out or {}).values():
        a.setflags(write=False)
    return out


_warned: set = set()  # (frame size, input size) pairs already logged as pre-processed on the host
log = logging.getLogger(__name__)
