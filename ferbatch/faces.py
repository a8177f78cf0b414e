"""The one face batch (:class:`FaceBatch`) and the one writer of its Arrow columns (:func:`face_columns`).

Every layer that holds per-face results holds a :class:`FaceBatch`: the detector's output
(:mod:`ferbatch.vision.detect`), the analysis step's rows (:mod:`ferbatch.vision.analysis`), a shard's
or a live part's dataset rows (:mod:`ferbatch.pipeline`, :mod:`ferbatch.live.watch`), one frame of the
HTTP service and ``ferbatch.analyze``'s :class:`ferbatch.api.Faces`. Modelled on supervision's
``Detections``: parallel arrays of M faces, :meth:`FaceBatch.empty`, :meth:`FaceBatch.merge`,
``batch[mask]`` and ``len(batch)``.

Pure: NumPy and :mod:`ferbatch.labels` only; pyarrow is imported inside :func:`face_columns`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ferbatch.labels import EMOTIONS, argmax_known

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "FaceBatch",
    "face_columns",
    "BOX_SOURCES",
    "PROB_SOURCES",
    "PROB_CLASSIFIED",
    "PROB_INTERPOLATED",
    "PROB_COLUMNS",
    "SOURCE_FRAME",
    "SOURCE_WINDOW",
    "SOURCE_TRACKED",
]

PROB_COLUMNS = tuple(f"prob_{e}" for e in EMOTIONS)
# box_source codes: which detection pass found the box (full frame, a window around a track, the track's prediction)
SOURCE_FRAME, SOURCE_WINDOW, SOURCE_TRACKED = 0, 1, 2
BOX_SOURCES = ("frame", "window", "tracked")  # the names the Arrow columns write, by code
# prob_source codes: where a row's probabilities come from (the classifier on the row's crop, or
# interpolated in time between two classified detections of its track that agree)
PROB_CLASSIFIED, PROB_INTERPOLATED = 0, 1
PROB_SOURCES = ("classified", "interpolated")

# the trailing shape of each per-face array (the leading axis is M)
_SHAPES: dict[str, tuple[int, ...]] = {
    "frame_pos": (),
    "boxes": (4,),
    "scores": (),
    "landmarks": (5, 2),
    "probs": (len(EMOTIONS),),
    "track_id": (),
    "source": (),
    "pts_ms": (),
    "face_idx": (),
    "prob_source": (),
}


@dataclass
class FaceBatch:
    """M faces as parallel arrays (row j of every array is face j).

    Attributes:
        frame_pos: (M,) int, the face's frame: int32 position in the analysed batch of frames
            (detector, analysis step), or int64 frame index in the video (dataset rows,
            :meth:`at_frames`); ascending, faces of a frame by descending score.
        boxes: (M, 4) float32 x1 y1 x2 y2 in source-frame pixels.
        scores: (M,) float32 detector score in 0..1 (the faces table's ``det_score``).
        landmarks: (M, 5, 2) float32 x y in source-frame pixels (right eye, left eye, nose tip,
            right and left mouth corner: YuNet's order), or None for a detector without them.
        probs: (M, 8) float32 expression probabilities in FER+ order (:data:`ferbatch.labels.EMOTIONS`),
            NaN for a class the classifier lacks; None before classification.
        track_id: (M,) int64 track id (-1 = no track), or None (no tracking).
        source: (M,) uint8 box_source codes (:data:`SOURCE_FRAME`, :data:`SOURCE_WINDOW`,
            :data:`SOURCE_TRACKED`; names in :data:`BOX_SOURCES`), or None (all full-frame).
        pts_ms: (M,) float64 presentation time of the face's frame in milliseconds, or None.
        face_idx: (M,) int16 rank of the face in its frame (0 = highest score), or None (then
            :meth:`ranks` gives it).
        prob_source: (M,) uint8 prob_source codes (:data:`PROB_CLASSIFIED`,
            :data:`PROB_INTERPOLATED`; names in :data:`PROB_SOURCES`), or None (all classified).

    Raises:
        ValueError: an array whose shape is not the one above for M = ``len(frame_pos)``.
    """

    frame_pos: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None
    probs: np.ndarray | None = None
    track_id: np.ndarray | None = None
    source: np.ndarray | None = None
    pts_ms: np.ndarray | None = None
    face_idx: np.ndarray | None = None
    prob_source: np.ndarray | None = None

    def __post_init__(self) -> None:
        m = len(self.frame_pos)
        for name, tail in _SHAPES.items():
            v = getattr(self, name)
            if v is not None and np.shape(v) != (m, *tail):
                raise ValueError(f"FaceBatch | received {name} {np.shape(v)}; expected {(m, *tail)}")

    def __len__(self) -> int:
        return len(self.frame_pos)

    def __getitem__(self, index: Any) -> FaceBatch:
        """The faces ``index`` selects (a bool mask (M,), integer positions, a slice or one int),
        every column indexed alike."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        cols: dict[str, Any] = {k: None if v is None else v[index] for k, v in self._columns().items()}
        return FaceBatch(**cols)

    def _columns(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def empty(cls, landmarks: bool = False) -> FaceBatch:
        """No faces: frame_pos (0,) int32, boxes (0, 4) float32, scores (0,) float32, landmarks
        (0, 5, 2) float32 when ``landmarks`` (a detector that gives them) else None, the rest None."""
        return cls(
            np.empty(0, np.int32),
            np.empty((0, 4), np.float32),
            np.empty(0, np.float32),
            np.empty((0, 5, 2), np.float32) if landmarks else None,
        )

    @classmethod
    def merge(cls, parts: Sequence[FaceBatch]) -> FaceBatch:
        """The faces of ``parts`` one after the other, in the given order; an optional column is
        kept only when every part has it (else None). No parts: :meth:`empty`."""
        if not parts:
            return cls.empty()
        cols = [p._columns() for p in parts]
        merged: dict[str, Any] = {k: None if any(c[k] is None for c in cols) else np.concatenate([c[k] for c in cols]) for k in cols[0]}
        return cls(**merged)

    def ranks(self) -> np.ndarray:
        """(M,) int16 rank of each face within its frame (0 = first, the highest score), for
        faces sorted by ``frame_pos``."""
        pos = np.asarray(self.frame_pos)
        return (np.arange(len(pos)) - np.searchsorted(pos, pos, side="left")).astype(np.int16)

    def at_frames(self, frame_idx: np.ndarray, pts_ms: np.ndarray) -> FaceBatch:
        """This batch as rows of a video: ``frame_pos`` (batch positions) mapped through
        ``frame_idx`` (F,) int64 to the frames' indices, ``pts_ms`` (F,) float64 their times,
        ``face_idx`` each face's rank in its frame (:meth:`ranks`)."""
        return replace(self, frame_pos=frame_idx[self.frame_pos], pts_ms=pts_ms[self.frame_pos], face_idx=self.ranks())

    def sorted_by_frame(self) -> FaceBatch:
        """The faces in ascending ``frame_pos``, in their order within a frame (stable)."""
        return self[np.argsort(self.frame_pos, kind="stable")]

    def per_frame(self, n_frames: int) -> list[FaceBatch]:
        """One batch per frame position 0..n_frames-1 (``frame_pos`` indexes the frames)."""
        return [self[self.frame_pos == i] for i in range(n_frames)]


def face_columns(batch: FaceBatch) -> dict[str, pa.Array]:
    """The one writer of a face batch's Arrow columns (the dataset's faces table and
    :meth:`ferbatch.api.Faces.to_arrow` take theirs from here), in this order:

    - ``face_idx`` int16 (``batch.face_idx``, else :meth:`FaceBatch.ranks`);
    - ``x1``, ``y1``, ``x2``, ``y2`` float32 pixels; ``det_score`` float32;
    - ``emotion`` string (argmax over the known classes), ``emotion_prob`` float32 (its probability),
      ``prob_<emotion>`` float32 for the 8 FER+ classes, NaN written as null (all null without probs);
    - ``track_id`` int64, null for -1 or without tracking;
    - ``box_source`` string ("frame", "window", "tracked"; "frame" without codes);
    - ``landmarks`` fixed-size list of 10 float32 (x y of the five points), null without them;
    - ``prob_source`` string ("classified", "interpolated"; "classified" without codes).

    Returns:
        {column name: pyarrow array of M values}.
    """
    import pyarrow as pa

    m = len(batch)
    b = batch.boxes
    cols: dict[str, pa.Array] = {"face_idx": pa.array(batch.ranks() if batch.face_idx is None else batch.face_idx, pa.int16())}
    for j, c in enumerate(("x1", "y1", "x2", "y2")):
        cols[c] = pa.array(b[:, j], pa.float32())
    cols["det_score"] = pa.array(batch.scores, pa.float32())
    p = batch.probs
    if p is None:
        cols["emotion"] = pa.nulls(m, pa.string())
        cols["emotion_prob"] = pa.nulls(m, pa.float32())
        cols.update({c: pa.nulls(m, pa.float32()) for c in PROB_COLUMNS})
    else:
        best = argmax_known(p) if m else np.empty(0, np.int64)
        cols["emotion"] = pa.array(np.asarray(EMOTIONS, dtype=object)[best], pa.string())
        cols["emotion_prob"] = pa.array(p[np.arange(m), best].astype(np.float32), pa.float32())
        for j, c in enumerate(PROB_COLUMNS):
            cols[c] = pa.array(p[:, j], pa.float32(), mask=np.isnan(p[:, j]))
    t = batch.track_id
    cols["track_id"] = pa.nulls(m, pa.int64()) if t is None else pa.array(t, pa.int64(), mask=t < 0)
    src = np.zeros(m, np.uint8) if batch.source is None else batch.source
    cols["box_source"] = pa.array(np.asarray(BOX_SOURCES, dtype=object)[src], pa.string())
    lm = batch.landmarks
    if lm is None:
        cols["landmarks"] = pa.nulls(m, pa.list_(pa.float32(), 10))
    else:
        flat = pa.array(np.ascontiguousarray(lm, np.float32).reshape(-1), pa.float32())
        cols["landmarks"] = pa.FixedSizeListArray.from_arrays(flat, 10)
    ps = np.zeros(m, np.uint8) if batch.prob_source is None else batch.prob_source
    cols["prob_source"] = pa.array(np.asarray(PROB_SOURCES, dtype=object)[ps], pa.string())
    return cols
