"""Expression classification: face crops in the geometry each classifier expects, batched inference,
and probabilities in the FER+ order (:data:`ferbatch.labels.EMOTIONS`).

Crop modes (registry key ``crop.mode``):
- "square": a square of side ``max(w, h) * crop.scale`` centred on the detector box, clipped to
  the frame, resized to the input size (gray for GRAY inputs). FER2013/FER+ faces are roughly
  such square, tight crops (Goodfellow et al. 2013).
- "aligned": one similarity warp per face from the 5 detector landmarks onto a FER2013-like 48x48
  template (:mod:`ferbatch.vision.align`), scaled to the input; the square crop for detections
  without landmarks (``--align``, registry ``crop.align``: :func:`ferbatch.models.prior.configure_classifier`).
- "align5": a similarity transform (``cv2.estimateAffinePartial2D``) from the 5 detector
  landmarks to the 112x112 template of the OpenCV Zoo expression model
  (opencv_zoo/models/facial_expression_recognition/facial_fer_model.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import cv2
import numpy as np

from ferbatch.colour import fixed_point
from ferbatch.errors import ConfigError
from ferbatch.faces import FaceBatch
from ferbatch.labels import to_ferplus_order
from ferbatch.picture import Image, Nv12Picture, YuvPicture, as_rgb, host_picture, region_rgb, stack_nv12
from ferbatch.specs import InputSpec, ModelSpec, Runner
from ferbatch.vision.align import aligned_crops, aligned_grey, crop_inputs
from ferbatch.vision.boxes import square_boxes

__all__ = ["Classifier", "crops_in_graph_possible", "extract_crops", "softmax", "ALIGN5_TEMPLATE_112"]

ALIGN5_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float32,
)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax; same shape and dtype float32."""
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z, dtype=np.float32)
    return e / e.sum(axis=axis, keepdims=True)


def extract_crops(frames: Sequence[Image], dets: FaceBatch, spec: ModelSpec) -> np.ndarray:
    """Cut each detected face out of its frame in the classifier's geometry.

    Args:
        frames: the batch's frames, (H, W, 3) uint8 RGB or :class:`ferbatch.picture.YuvPicture`
            each (a grey square crop is cut from a picture's luma plane, no RGB made).
        dets: detections of that batch (``frame_pos`` indexes ``frames``).
        spec: the classifier's registry entry (input size, colour, ``crop`` mode and scale).

    Returns:
        (M, h, w, C) uint8 crops, C = 1 for GRAY inputs else 3 in the input's colour order.

    Raises:
        ConfigError: "align5" without landmarks, or an unknown crop mode.
    """
    inp: InputSpec = spec.input
    mode = spec.crop.get("mode", "square")
    frames = [host_picture(f) for f in frames]  # an NV12 picture's host planes (copied once from a device)
    out = np.empty((len(dets), inp.height, inp.width, inp.channels), np.uint8)
    if mode == "align5":
        if dets.landmarks is None:
            raise ConfigError(f"classifier {spec.name} | needs 5 face landmarks; use a detector that gives them (yunet-*)")
        tpl = ALIGN5_TEMPLATE_112 * np.array([inp.width / 112, inp.height / 112], np.float32)
        for i in range(len(dets)):
            m, _ = cv2.estimateAffinePartial2D(dets.landmarks[i], tpl, method=cv2.LMEDS)
            if m is None:  # degenerate landmarks: fall back to the box
                m = _box_to_affine(dets.boxes[i], inp.width, inp.height)
            crop = cv2.warpAffine(as_rgb(frames[dets.frame_pos[i]]), m, (inp.width, inp.height), flags=cv2.INTER_LINEAR, borderValue=0)
            out[i] = _to_color(crop, inp.color)
        return out
    if mode not in ("square", "aligned"):
        raise ConfigError(f"classifier {spec.name} | unknown crop mode {mode!r}; expected 'square', 'aligned' or 'align5'")
    scale = float(spec.crop.get("scale", 1.0))
    if mode == "aligned" and dets.landmarks is not None:  # without landmarks: the square crop
        # grey from pictures' planes (warped, then mapped to grey: no RGB made); else RGB, then the input's colour
        if inp.color == "GRAY" and all(isinstance(frames[int(p)], YuvPicture) for p in dets.frame_pos):
            pictures = [f if isinstance(f, YuvPicture) else None for f in frames]
            out[:] = aligned_grey(pictures, dets.frame_pos, dets.landmarks, inp.width, inp.height, scale)
            return out
        srcs: list[np.ndarray | None] = [None] * len(frames)
        for p in np.unique(dets.frame_pos):
            srcs[int(p)] = as_rgb(frames[int(p)])
        warped = aligned_crops(srcs, dets.frame_pos, dets.landmarks, inp.width, inp.height, scale)
        for i in range(len(dets)):
            out[i] = _to_color(warped[i], inp.color).reshape(out.shape[1:])
        return out
    sq = square_boxes(dets.boxes, scale)
    for i in range(len(dets)):
        f = frames[dets.frame_pos[i]]
        fh, fw = f.shape[:2]
        x1, y1 = int(max(0, np.floor(sq[i, 0]))), int(max(0, np.floor(sq[i, 1])))
        x2, y2 = int(min(fw, np.ceil(sq[i, 2]))), int(min(fh, np.ceil(sq[i, 3])))
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        if isinstance(f, YuvPicture) and inp.color == "GRAY":
            crop = f.gray(x1, y1, x2, y2)
        else:
            crop = _to_color(region_rgb(f, x1, y1, x2, y2), inp.color)
        out[i] = cv2.resize(crop, (inp.width, inp.height), interpolation=cv2.INTER_AREA).reshape(out.shape[1:])
    return out


def _box_to_affine(box: np.ndarray, w: int, h: int) -> np.ndarray:
    sx, sy = w / max(box[2] - box[0], 1), h / max(box[3] - box[1], 1)
    return np.array([[sx, 0, -box[0] * sx], [0, sy, -box[1] * sy]], np.float32)


def _to_color(rgb: np.ndarray, color: str) -> np.ndarray:
    if color == "GRAY":
        return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)[..., None]
    if color == "BGR":
        return rgb[..., ::-1]
    return rgb


def crops_in_graph_possible(spec: ModelSpec) -> bool:
    """True when the crop graph (:mod:`ferbatch.models.graph_crop`) cuts this classifier's crops:
    the aligned crop (``crop.mode`` "aligned", as ``--align`` configures it) of a grey, square input."""
    inp = spec.input
    return spec.crop.get("mode") == "aligned" and inp.color == "GRAY" and inp.width == inp.height


class Classifier:
    """Batched expression classifier over a runner.

    Args:
        runner: runs the prepared classifier graph (symbolic batch, uint8 (N, h, w, C) input
            normalised inside: :func:`ferbatch.models.graphs.prepend_uint8_input`).
        spec: the registry entry (labels, output kind, input spec).
        frames_runner: an ONNX Runtime runner over the same classifier with the crop graph in front
            (:func:`ferbatch.models.graph_crop.prepare_crop_classifier`, ``nv12=True``) for
            :meth:`classify_frames`; used only by an aligned grey classifier (``crop.mode``
            "aligned", the crop the graph cuts); None: crops are cut on the host.
    """

    def __init__(self, runner: Runner, spec: ModelSpec, frames_runner=None):
        if spec.kind != "classifier":
            raise ConfigError(f"model {spec.name} | is a {spec.kind}; expected a classifier")
        self.runner = runner
        self.spec = spec
        self.frames_runner = frames_runner if crops_in_graph_possible(spec) else None

    def classify_faces(self, frames: Sequence[Image], faces: FaceBatch) -> tuple[np.ndarray, float]:
        """Classify faces of a batch of frames: :meth:`classify_frames` where the crops can be cut
        inside the graph (:meth:`crops_in_graph`), else :func:`extract_crops` and :meth:`classify`.

        Returns:
            ((M, 8) float32 probabilities as :meth:`classify`, seconds spent cutting crops on the host).
        """
        if self.crops_in_graph(frames, faces):
            return self.classify_frames(frames, faces), 0.0
        t = time.perf_counter()
        crops = extract_crops(frames, faces, self.spec)
        dt = time.perf_counter() - t
        return self.classify(crops), dt

    def crops_in_graph(self, frames: Sequence[Image], faces: FaceBatch) -> bool:
        """True when :meth:`classify_frames` cuts these faces' crops inside the graph: a
        ``frames_runner``, landmarks, and every frame a face is in an :class:`Nv12Picture` of one size and
        one matrix (the graph converts with one ``colour`` per call)."""
        if self.frames_runner is None or faces.landmarks is None or not len(faces):
            return False
        used = [frames[int(p)] for p in np.unique(faces.frame_pos)]
        nv12 = [f for f in used if isinstance(f, Nv12Picture)]
        return len(nv12) == len(used) and len({(f.shape, f.matrix) for f in nv12}) == 1

    def classify_frames(self, frames: Sequence[Image], faces: FaceBatch) -> np.ndarray:
        """Classify faces from their frames with the crops cut inside the graph
        (:mod:`ferbatch.models.graph_crop`: the aligned grey crop of :func:`extract_crops`, within a
        grey level or two); only the faces' warps and the stacked NV12 frames they are in go in, the
        frames bound where they lie (a GPU's memory: :meth:`ferbatch.models.runners.onnxruntime.OrtRunner.infer_bound`).

        Args:
            frames: the batch's frames; those the faces are in are :class:`Nv12Picture` of one size
                (:meth:`crops_in_graph`).
            faces: M faces with (M, 5, 2) landmarks; ``frame_pos`` indexes ``frames``.

        Returns:
            (M, 8) float32 probabilities, as :meth:`classify`.

        Raises:
            ValueError: frames that are not NV12 pictures of one size and one matrix.
        """
        if not len(faces):
            return np.empty((0, 8), np.float32)
        assert self.frames_runner is not None and faces.landmarks is not None
        size, scale = self.spec.input.width, float(self.spec.crop.get("scale", 1.0))
        step = self.frames_runner.max_batch or len(faces)
        outs = []
        for i in range(0, len(faces), step):  # each call binds only the frames its faces are in
            part = faces[i : i + step]
            used, pos = np.unique(part.frame_pos, return_inverse=True)
            pics = [frames[int(p)] for p in used]
            nv12 = [f for f in pics if isinstance(f, Nv12Picture)]
            if len(nv12) != len(pics) or len({f.matrix for f in nv12}) != 1:
                raise ValueError("Classifier.classify_frames | the faces' frames are not NV12 pictures of one matrix")
            assert part.landmarks is not None
            feed = {"planes": stack_nv12(nv12), "colour": fixed_point(nv12[0].matrix), **crop_inputs(part.landmarks, pos, size, scale)}
            outs.append(self.frames_runner.infer_bound(feed)[self.spec.outputs["scores"]])
        return self._probs(np.concatenate(outs))

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Classify face crops, in chunks of the runner's max batch.

        Args:
            crops: (M, h, w, C) uint8 from :func:`extract_crops`.

        Returns:
            (M, 8) float32 probabilities in FER+ order; NaN for classes the model lacks. Logit
            outputs become ``softmax((logits + spec.logit_bias) / spec.temperature)`` (the prior
            setting's logit adjustment, :mod:`ferbatch.models.prior`, then temperature scaling).
        """
        inp = self.spec.input
        if len(crops) == 0:
            return np.empty((0, 8), np.float32)
        step = self.runner.max_batch or len(crops)
        outs = []
        for i in range(0, len(crops), step):
            x = np.ascontiguousarray(crops[i : i + step], dtype=np.uint8)  # normalised inside the prepared graph
            outs.append(self.runner.infer({inp.name: x})[self.spec.outputs["scores"]])
        return self._probs(np.concatenate(outs))

    def _probs(self, y: np.ndarray) -> np.ndarray:
        """(M, 8) float32 FER+-order probabilities of the graph's (M, K) scores (:meth:`classify`)."""
        y = y.reshape(len(y), -1).astype(np.float32)
        if self.spec.output_kind == "logits":
            if self.spec.logit_bias:  # the prior setting (ferbatch.models.prior)
                y = y + np.asarray(self.spec.logit_bias, np.float32)
            y = softmax(y / self.spec.temperature)
        return to_ferplus_order(y, self.spec.labels)
