"""Resolution-aware detection: overlapping tiles at the detector's native input size, plus the
whole frame, merged with the one NMS (:func:`ferbatch.vision.boxes.nms`).

A detector with a fixed input (UltraFace 320x240) shrinks a 1920x1080 frame 6x, so a 30-pixel face
becomes 5 pixels, below the smallest prior (10 px, Linzaer's ``min_boxes``). :class:`TiledDetector`
wraps a :class:`~ferbatch.vision.detect.Detector` and runs it on

- the whole frame (large faces, faces that no tile holds whole), and
- overlapping tiles whose source size is the model input divided by ``scale`` (``scale = 1``:
  native pixels, no resizing), laid out evenly so that neighbouring tiles overlap by at least
  ``overlap`` of a tile side,

then maps each tile's boxes (and landmarks) back to frame pixels by adding the tile's integer
origin: the inner detector already maps boxes from its input to the crop's pixels, so the mapping
is exact. A tile box that touches an inner tile edge (an edge that is not the frame's) is a cut face
and is dropped; the face is whole in the neighbouring tile or in the whole-frame pass. The rest is
merged per frame with the detector's own NMS (same IoU threshold, descending score).

The scale follows the frame and the smallest face wanted (:func:`tile_scale`): tiles are used only
when the whole-frame pass would shrink a ``min_face_px`` face below ``MODEL_MIN_FACE`` input pixels.

:class:`FrameSizedDetector` is the cheaper form for graphs with dynamic H/W (YuNet): the input itself
follows the frame (the default detector; measured in ``scripts/bench_detect.py``, docs/performance.md).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ferbatch.faces import FaceBatch
from ferbatch.picture import Image, as_rgb
from ferbatch.vision.boxes import nms
from ferbatch.vision.detect import Detector

__all__ = ["MODEL_MIN_FACE", "AnyDetector", "FrameSizedDetector", "Tile", "TiledDetector", "from_crops", "plan_tiles", "tile_scale"]

# Smallest face (input pixels) the detectors find reliably: 2x UltraFace's smallest prior (10 px,
# min_boxes of Linzaer's detector) and YuNet's stride-8 anchor (OpenCV Zoo); a rule of thumb,
# checked on the dlib photos (37-pixel faces) by scripts/bench_detect.py.
MODEL_MIN_FACE = 20.0
_EDGE_PX = 2.0  # a box within this many pixels of an inner tile edge counts as cut


@dataclass(frozen=True)
class Tile:
    """A crop of a frame in source pixels: ``frame[y0:y1, x0:x1]``; integers, ``x0 < x1 <= W``."""

    x0: int
    y0: int
    x1: int
    y1: int


def tile_scale(frame_wh: tuple[int, int], input_wh: tuple[int, int], min_face_px: float | None) -> float:
    """The tile scale (input pixels per frame pixel) for a frame, or 0.0 for no tiles.

    Args:
        frame_wh: frame width, height in pixels.
        input_wh: the detector's input width, height in pixels.
        min_face_px: smallest face side (frame pixels) to find; None = no tiling.

    Returns:
        0.0 when the whole-frame pass already shows a ``min_face_px`` face at ``MODEL_MIN_FACE``
        input pixels or more (a plain resize keeps aspect per axis: the smaller factor counts);
        else ``MODEL_MIN_FACE / min_face_px``, capped at 1.0 (tiles never upsample).

    Raises:
        ValueError: ``min_face_px`` is not positive.
    """
    if min_face_px is None:
        return 0.0
    if min_face_px <= 0:
        raise ValueError(f"tile_scale | received min_face_px {min_face_px}; expected > 0")
    whole = min(input_wh[0] / frame_wh[0], input_wh[1] / frame_wh[1])
    want = MODEL_MIN_FACE / min_face_px
    if whole >= want:
        return 0.0
    return min(want, 1.0)


def _starts(length: int, tile: int, overlap: float) -> list[int]:
    if tile >= length:
        return [0]
    step = max(1.0, tile * (1.0 - overlap))
    n = math.ceil((length - tile) / step) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def plan_tiles(frame_wh: tuple[int, int], input_wh: tuple[int, int], scale: float, overlap: float = 0.25) -> list[Tile]:
    """Overlapping tiles covering a frame, each ``input / scale`` frame pixels (clipped to the frame).

    Args:
        frame_wh: frame width, height in pixels.
        input_wh: detector input width, height in pixels.
        scale: input pixels per frame pixel (0 < scale <= 1).
        overlap: least overlap of neighbouring tiles as a fraction of the tile side (0 <= overlap < 1).

    Returns:
        Tiles in row-major order; evenly spaced, first at 0 and last ending at the frame edge.

    Raises:
        ValueError: scale or overlap out of range.
    """
    if not 0 < scale <= 1 or not 0 <= overlap < 1:
        raise ValueError(f"plan_tiles | received scale {scale}, overlap {overlap}; expected 0 < scale <= 1, 0 <= overlap < 1")
    fw, fh = frame_wh
    tw, th = min(fw, round(input_wh[0] / scale)), min(fh, round(input_wh[1] / scale))
    return [Tile(x, y, x + tw, y + th) for y in _starts(fh, th, overlap) for x in _starts(fw, tw, overlap)]


class TiledDetector:
    """A :class:`Detector` run on the whole frame and on overlapping tiles, merged by NMS.

    Args:
        detector: the detector to wrap (its thresholds and ``max_faces`` apply to the merge).
        min_face_px: smallest face side (frame pixels) to find; decides per frame size whether and
            how finely to tile (:func:`tile_scale`). None: never tile (same as ``detector``).
        scale: a fixed tile scale instead (input pixels per frame pixel, 0 < scale <= 1); 1.0 =
            tiles of the model's native input size in frame pixels.
        overlap: least overlap of neighbouring tiles, fraction of the tile side.
        whole_frame: also run the whole frame (large faces); False only for measurements.

    Raises:
        ValueError: both ``min_face_px`` and ``scale`` given, or out of range.
    """

    def __init__(
        self,
        detector: Detector | FrameSizedDetector,
        *,
        min_face_px: float | None = None,
        scale: float | None = None,
        overlap: float = 0.25,
        whole_frame: bool = True,
    ):
        if min_face_px is not None and scale is not None:
            raise ValueError("TiledDetector | give min_face_px or scale, not both")
        if scale is not None and not 0 < scale <= 1:
            raise ValueError(f"TiledDetector | received scale {scale}; expected 0 < scale <= 1")
        self.detector = detector
        self.spec = detector.spec
        self.runner = detector.runner
        self.max_faces, self.score_threshold, self.iou_threshold = detector.max_faces, detector.score_threshold, detector.iou_threshold
        self.min_face_px = min_face_px
        self.scale = scale
        self.overlap = overlap
        self.whole_frame = whole_frame

    @property
    def gives_landmarks(self) -> bool:
        """True when detections carry 5 landmarks (YuNet)."""
        return self.detector.gives_landmarks

    @property
    def frames_in_graph(self) -> int:
        """Frames the wrapped detector pre-processed in its NV12 graph (:attr:`Detector.frames_in_graph`)."""
        return self.detector.frames_in_graph

    def thread_frames(self) -> tuple[int, int]:
        """The wrapped detector's :meth:`Detector.thread_frames` (tiles count as host inputs)."""
        return self.detector.thread_frames()

    def tiles_for(self, frame_wh: tuple[int, int]) -> list[Tile]:
        """The tiles run on a frame of this size (empty: the whole frame only)."""
        inp = (self.spec.input.width, self.spec.input.height)
        whole = self.detector.input_for(frame_wh) if isinstance(self.detector, FrameSizedDetector) else inp
        s = self.scale if self.scale is not None else tile_scale(frame_wh, whole, self.min_face_px)
        if s <= 0:
            return []
        tiles = plan_tiles(frame_wh, inp, s, self.overlap)
        return [] if len(tiles) == 1 and self.whole_frame else tiles

    def detect(self, frames: Sequence[Image], min_score: float | None = None) -> FaceBatch:
        """Find faces in a batch of frames.

        Args:
            frames: F arrays (H, W, 3) uint8 RGB or pictures (:data:`ferbatch.picture.Image`); sizes
                may differ. Tiles are cut from each frame's RGB (an NV12 picture's host copy).
            min_score: as in :meth:`Detector.detect`.

        Returns:
            FaceBatch in each frame's pixels, as :meth:`Detector.detect` (descending score
            within a frame, at most ``max_faces`` per frame).
        """
        images: list[Image] = []
        owner: list[int] = []
        origin: list[tuple[int, int]] = []
        inner: list[tuple[bool, bool, bool, bool] | None] = []  # inner edges of a tile (None: whole frame)
        for i, f in enumerate(frames):
            fh, fw = f.shape[:2]
            tiles = self.tiles_for((fw, fh))
            if self.whole_frame or not tiles:
                images.append(f)
                owner.append(i)
                origin.append((0, 0))
                inner.append(None)
            for t in tiles:
                images.append(as_rgb(f)[t.y0 : t.y1, t.x0 : t.x1])
                owner.append(i)
                origin.append((t.x0, t.y0))
                inner.append((t.x0 > 0, t.y0 > 0, t.x1 < fw, t.y1 < fh))
        if len(images) == len(frames) and all(o is None for o in inner):
            return self.detector.detect(frames, min_score)  # nothing tiled: exactly the plain detector
        d = self.detector.detect(images, min_score)
        img = d.frame_pos
        boxes, lms, keep = from_crops(d, origin, inner, [im.shape[:2] for im in images])
        frame_of = np.asarray(owner, np.int64)[img]
        pos, out_b, out_s, out_l = [], [], [], []
        for i in range(len(frames)):
            sel = np.flatnonzero(keep & (frame_of == i))
            k = sel[nms(boxes[sel], d.scores[sel], -1.0, self.detector.iou_threshold, self.detector.max_faces)]
            pos.append(np.full(len(k), i, np.int32))
            out_b.append(boxes[k])
            out_s.append(d.scores[k])
            if lms is not None:
                out_l.append(lms[k])
        return FaceBatch(
            np.concatenate(pos) if pos else np.empty(0, np.int32),
            np.concatenate(out_b).astype(np.float32) if out_b else np.empty((0, 4), np.float32),
            np.concatenate(out_s).astype(np.float32) if out_s else np.empty(0, np.float32),
            (np.concatenate(out_l).astype(np.float32) if out_l else np.empty((0, 5, 2), np.float32)) if self.gives_landmarks else None,
        )


def from_crops(
    d: FaceBatch,
    origin: Sequence[tuple[int, int]],
    inner: Sequence[tuple[bool, bool, bool, bool] | None],
    shapes: Sequence[tuple[int, ...]],
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Detections made on crops of frames (tiles, track windows) placed back in their frames.

    Args:
        d: detections on the crops (``frame_pos`` indexes the crops).
        origin: per crop, its (x0, y0) integer origin in the frame, pixels.
        inner: per crop, which of its edges (left, top, right, bottom) lie inside the frame, or None
            for a crop that is the whole frame.
        shapes: per crop, its (h, w, ...) shape.

    Returns:
        boxes (D, 4) float32 in frame pixels; landmarks (D, 5, 2) float32 in frame pixels or None;
        keep (D,) bool, False for a box within ``_EDGE_PX`` of an inner crop edge (a face the crop
        cuts: it is whole in a neighbouring crop or the whole-frame pass).
    """
    off = np.array(origin, np.float32).reshape(-1, 2)[d.frame_pos]
    boxes = d.boxes + np.tile(off, 2)
    lms = None if d.landmarks is None else d.landmarks + off[:, None, :]
    keep = np.ones(len(d), bool)
    for j in range(len(d)):
        edges = inner[int(d.frame_pos[j])]
        if edges is None:
            continue
        b = d.boxes[j]
        h, w = shapes[int(d.frame_pos[j])][:2]
        keep[j] = not (
            (edges[0] and b[0] <= _EDGE_PX)
            or (edges[1] and b[1] <= _EDGE_PX)
            or (edges[2] and b[2] >= w - _EDGE_PX)
            or (edges[3] and b[3] >= h - _EDGE_PX)
        )
    return boxes, lms, keep


class FrameSizedDetector:
    """A detector whose input follows the frame: a frame larger than the registry's input gets an
    input that holds it at native resolution (rounded up to ``multiple``, letterboxed; the longest
    side at most ``max_side``); smaller frames keep the registry's input as before. For graphs with
    dynamic height and width (``yunet-frame``, ``yunet-2026may``; UltraFace's priors fix its input, so it cannot).

    Args:
        detector: a letterboxing detector over a graph with dynamic H and W.
        multiple: the input sides are rounded up to this (YuNet's largest stride, 32).
        max_side: the longest input side; larger frames are shrunk to it (cost grows with pixels).

    Raises:
        ValueError: the detector does not letterbox (a plain resize would distort the frame).
    """

    def __init__(self, detector: Detector, *, multiple: int = 32, max_side: int = 1920):
        if not detector.spec.letterbox:
            raise ValueError(f"FrameSizedDetector | {detector.spec.name} does not letterbox; its input size is fixed")
        self.detector = detector
        self.spec = detector.spec
        self.runner = detector.runner
        self.multiple = multiple
        self.max_side = max_side
        self.max_faces, self.score_threshold, self.iou_threshold = detector.max_faces, detector.score_threshold, detector.iou_threshold
        self._by_size: dict[tuple[int, int], Detector] = {}
        self._sizing = threading.Lock()  # threads share the wrapper: one Detector per size (its counts live on it)

    @property
    def gives_landmarks(self) -> bool:
        """True when detections carry 5 landmarks (YuNet)."""
        return self.detector.gives_landmarks

    @property
    def frames_in_graph(self) -> int:
        """Frames the NV12 graph pre-processed, over every input size (:attr:`Detector.frames_in_graph`)."""
        return sum(d.frames_in_graph for d in list(self._by_size.values()))

    def thread_frames(self) -> tuple[int, int]:
        """:meth:`Detector.thread_frames` summed over every input size."""
        counts = [d.thread_frames() for d in list(self._by_size.values())]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def input_for(self, frame_wh: tuple[int, int]) -> tuple[int, int]:
        """Input width, height for a frame size: the registry's input when the frame fits in it,
        else the frame (shrunk to ``max_side``) rounded up to ``multiple``."""
        base = (self.spec.input.width, self.spec.input.height)
        if frame_wh[0] <= base[0] and frame_wh[1] <= base[1]:
            return base
        r = min(1.0, self.max_side / max(frame_wh))
        m = self.multiple
        w, h = (int(math.ceil(v * r / m) * m) for v in frame_wh)
        return w, h

    def sized(self, wh: tuple[int, int]) -> Detector:
        """The detector over this graph with an input of ``wh`` (width, height) pixels, each a
        multiple of ``multiple`` (cached; ``--detect-every`` runs small windows through one)."""
        return self._for(wh)

    def _for(self, wh: tuple[int, int]) -> Detector:
        d = self._by_size.get(wh)
        if d is not None:  # the common case, per call: no lock
            return d
        with self._sizing:  # two threads meeting a new size build one Detector, not two (one would lose its counts)
            if wh not in self._by_size:
                d = self.detector
                spec = dataclasses.replace(d.spec, input=dataclasses.replace(d.spec.input, width=wh[0], height=wh[1]))
                self._by_size[wh] = Detector(
                    d.runner,
                    spec,
                    in_graph_nms=d.in_graph_nms,
                    max_faces=d.max_faces,
                    score_threshold=d.score_threshold,
                    iou_threshold=d.iou_threshold,
                    nv12_runner=d.nv12_runner,
                )
            return self._by_size[wh]

    def detect(self, frames: Sequence[Image], min_score: float | None = None) -> FaceBatch:
        """Find faces in a batch of frames (F arrays (H, W, 3) uint8 RGB or pictures); as :meth:`Detector.detect`."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, f in enumerate(frames):
            groups.setdefault(self.input_for((f.shape[1], f.shape[0])), []).append(i)
        if len(groups) == 1:
            return self._for(next(iter(groups))).detect(frames, min_score)
        parts = []
        for wh, idx in groups.items():
            d = self._for(wh).detect([frames[i] for i in idx], min_score)
            parts.append(dataclasses.replace(d, frame_pos=np.asarray(idx, np.int32)[d.frame_pos]))
        return FaceBatch.merge(parts).sorted_by_frame()


AnyDetector = Detector | TiledDetector | FrameSizedDetector
"""What a worker detects with: a plain detector or one of the wrappers above (same ``detect``)."""
