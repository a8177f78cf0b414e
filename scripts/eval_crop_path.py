"""Evaluate gray-crop classifiers through the pipeline's own crop path, at several ``crop.scale``.

Each FER2013Valid face (48x48 gray) is upscaled 3x (bicubic) and placed in the middle of a
320x240 mid-gray RGB frame; the default detector (registry ``[defaults] detector``) runs on the
frames, the top-scoring box of each frame (``vision.top_face.top_faces``) is cut out as ``vision.classify.extract_crops`` does
(square box x ``crop.scale``, clipped to the frame, INTER_AREA to the input size) and classified.
Frames where the detector finds no face are counted (``missed``) and left out of the metrics.
Compare with ``ferbatch eval`` on the pre-cropped faces to see what the crop geometry costs.
With ``--pictures`` the frames are first made limited-range 4:2:0 planes (BT.601, as H.264 carries
them) and run both ways a decoder's frame reaches the models: converted to RGB by swscale (PyAV's
``to_ndarray("rgb24")``, the frame path before) and as the pipeline's YUV pictures
(``ferbatch.picture.YuvPicture``: detector input resized in the planes, grey crops from the luma);
a check of the frame path, not a choice made on this set. ``--pictures`` adds the hybrid "swscale-RGB boxes,
picture crops" (detector on swscale's RGB, crops from the pictures) that says which half of the frame
path moves the figure: the detector's input or the crops.

Faces: ``--faces selection`` (default) the selection split of FER2013Train
(``ferbatch.training.protocol.selection_mask``; the classifier issue's protocol keeps FER2013Valid for
the model cards), ``--faces valid`` FER2013Valid. Crops: ``--crop square`` the square box x each
``--scales``, ``--crop registry`` each classifier's own crop (aligned on the detector's landmarks where
its registry entry says so), what a run does.

Usage: FERBATCH_MODEL_MIRROR=../shared/models python scripts/eval_crop_path.py --models a,b --scales 1.0,1.1,1.25
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from ferbatch.config import JobConfig
from ferbatch.labels import EMOTIONS
from ferbatch.models.load import load_models
from ferbatch.training.data import load_faces
from ferbatch.training.evaluate import metrics
from ferbatch.vision.classify import extract_crops
from ferbatch.vision.top_face import top_faces


def frames_of(images: np.ndarray, up: int = 3) -> list[np.ndarray]:
    """(N, 48, 48) uint8 gray faces -> N (240, 320, 3) uint8 RGB frames with the face upscaled in the middle."""
    out = []
    for im in images:
        face = cv2.resize(im, (48 * up, 48 * up), interpolation=cv2.INTER_CUBIC)
        f = np.full((240, 320), 128, np.uint8)
        y, x = (240 - face.shape[0]) // 2, (320 - face.shape[1]) // 2
        f[y : y + face.shape[0], x : x + face.shape[1]] = face
        out.append(cv2.cvtColor(f, cv2.COLOR_GRAY2RGB))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True)
    ap.add_argument("--scales", default="1.0,1.1,1.25")
    ap.add_argument("--val", default="../shared/data/ferplus/FER2013Valid")
    ap.add_argument("--train", default="../shared/data/ferplus/FER2013Train.tar.gz", help="FER+ train folder or its .tar.gz")
    ap.add_argument("--faces", choices=("selection", "valid"), default="selection", help="which labelled faces (module docstring)")
    ap.add_argument("--crop", choices=("square", "registry"), default="square", help="square x --scales, or the classifier's own crop")
    ap.add_argument("--json")
    ap.add_argument("--pictures", action="store_true", help="also run the frames as YUV pictures (the pipeline's frame path)")
    a = ap.parse_args()
    if a.faces == "valid":
        va = load_faces(a.val, 48)
    else:
        from ferbatch.training.protocol import selection_mask
        from ferbatch.training.train import prepare_train_folder

        tr = load_faces(prepare_train_folder(a.train), 48)
        va = tr.take(selection_mask(tr.names))
    rgb = frames_of(va.images)
    paths: dict[str, tuple[list, list]] = {"rgb": (rgb, rgb)}  # path -> (detector's frames, crops' frames)
    if a.pictures:  # both paths from the same limited-range 4:2:0 planes, as a decoder gives them
        import av

        from ferbatch.picture import YuvPicture

        i420 = [cv2.cvtColor(f, cv2.COLOR_RGB2YUV_I420) for f in rgb]
        sws = [av.VideoFrame.from_ndarray(x, format="yuv420p").to_ndarray(format="rgb24") for x in i420]
        pics = [YuvPicture.from_i420(x) for x in i420]
        paths = {
            "decoded, swscale RGB": (sws, sws),
            "decoded, yuv picture": (pics, pics),
            "decoded, swscale-RGB boxes, picture crops": (sws, pics),
        }
    results = {}
    for name, (path, (det_frames, frames)) in [(n, p) for n in a.models.split(",") for p in paths.items()]:
        models = load_models(JobConfig(classifier=name, backend="onnxruntime"), threads=1)
        top = top_faces(models.detector.detect(det_frames))
        crops: list[tuple[str, object]] = (
            [(f"scale {v}", {"mode": "square", "scale": float(v)}) for v in a.scales.split(",")]
            if a.crop == "square"
            else [("registry crop", models.classifier.spec.crop)]
        )
        for label, crop in crops:
            spec = replace(models.classifier.spec, crop=crop)
            m = metrics(models.classifier.classify(extract_crops(frames, top, spec)), va.labels[top.frame_pos])
            results[f"{name} {label} ({path})"] = {
                "found": len(top),
                "missed": len(frames) - len(top),
                "acc1": m["acc1"],
                "macro_f1": m["macro"]["f1"],
                "recall": {e: m["per_class"][e]["recall"] for e in EMOTIONS},
            }
        models.close()
    print("| classifier, crop.scale | faces found | acc@1 | macro-F1 | " + " | ".join(EMOTIONS) + " |")
    print("|---|---|---|---|" + "---|" * len(EMOTIONS))
    for k, r in results.items():
        print(
            f"| {k} | {r['found']}/{r['found'] + r['missed']} | {r['acc1']:.4f} | {r['macro_f1']:.4f} | "
            + " | ".join(f"{r['recall'][e]:.2f}" for e in EMOTIONS)
            + " |"
        )
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
