"""Classification: FER+ order, batched equals one at a time, real accuracy on the FER+ sample."""

import csv

import cv2
import numpy as np
from conftest import DATA, WOLFGANG, read_frames

from ferbatch.labels import EMOTIONS, to_ferplus_order
from ferbatch.vision.classify import extract_crops


def test_seven_class_order_maps_into_ferplus_with_null_contempt():
    p = np.array([[0.1, 0.2, 0.3, 0.05, 0.05, 0.1, 0.2]], np.float32)
    out = to_ferplus_order(p, ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"])
    assert out[0, EMOTIONS.index("fear")] == np.float32(0.3)
    assert out[0, EMOTIONS.index("neutral")] == np.float32(0.2)
    assert np.isnan(out[0, EMOTIONS.index("contempt")])


def test_batched_classification_equals_one_at_a_time(models):
    frames = read_frames(WOLFGANG)[::20]
    dets = models.detector.detect(frames)
    crops = extract_crops(frames, dets, models.classifier.spec)
    inp = models.classifier.spec.input
    assert crops.shape == (len(dets), inp.height, inp.width, 1) and len(dets) >= len(frames) - 1
    batched = models.classifier.classify(crops)
    single = np.concatenate([models.classifier.classify(crops[i : i + 1]) for i in range(len(crops))])
    np.testing.assert_allclose(batched, single, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(np.nansum(batched, 1), 1.0, atol=1e-4)


def test_ferplus_sample_accuracy(models):
    """The default classifier (8 classes) on the 80-image FER+ sample, 10 faces per class."""
    with open(DATA / "fer_sample/labels.csv") as f:
        rows = list(csv.DictReader(f))
    inp = models.classifier.spec.input
    imgs = np.stack(
        [cv2.resize(cv2.imread(str(DATA / "fer_sample" / r["image"]), cv2.IMREAD_GRAYSCALE), (inp.width, inp.height)) for r in rows]
    )
    probs = models.classifier.classify(imgs[..., None])
    pred = np.nanargmax(probs, 1)
    truth = np.array([EMOTIONS.index(r["ferplus_majority"]) for r in rows])
    acc = float((pred == truth).mean())
    assert acc > 0.5, acc  # chance is 1/8; balanced classes make this harder than FER2013Valid (README table)
    happy = truth == EMOTIONS.index("happiness")
    assert (pred[happy] == truth[happy]).mean() >= 0.8
