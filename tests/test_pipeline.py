"""The pure pipeline without Ray: sharding does not change the rows (every frame detected, N = 1).

Also the N = 1 half of tests/test_time.py::test_the_interval_keeps_its_schedule_across_shards:
one pass and the same frames cut into 60-frame shards give the same frames, boxes and labels."""

import numpy as np
from conftest import WOLFGANG

from ferbatch.media.probe import probe_video
from ferbatch.media.shards import Shard, plan_shards
from ferbatch.pipeline import process_shard


def test_one_shard_and_many_shards_give_the_same_rows(models):
    """The clip's last three 60-frame shards (from frame 288, a keyframe, to its end: a seek into the
    clip and the tail) against one shard over the same frames; the parts with other batch and
    prefetch settings."""
    _, index = probe_video(WOLFGANG)
    shards = plan_shards("v", str(WOLFGANG), index, 60)[-3:]
    assert len(shards) == 3 and shards[0].start == 288 and shards[-1].end is None
    whole = process_shard(Shard("v", str(WOLFGANG), 0, shards[0].start, None, index), models)
    parts = [process_shard(s, models, detect_batch=3, prefetch=0) for s in shards]
    np.testing.assert_array_equal(whole.frame_idx, np.arange(288, 472))
    np.testing.assert_array_equal(whole.frame_idx, np.concatenate([p.frame_idx for p in parts]))
    np.testing.assert_array_equal(whole.face_count, np.concatenate([p.face_count for p in parts]))
    np.testing.assert_array_equal(whole.faces.frame_pos, np.concatenate([p.faces.frame_pos for p in parts]))
    np.testing.assert_allclose(whole.faces.boxes, np.concatenate([p.faces.boxes for p in parts]), atol=1e-3)
    probs = np.concatenate([p.faces.probs for p in parts])
    np.testing.assert_allclose(whole.faces.probs, probs, atol=1e-4, equal_nan=True)
    np.testing.assert_array_equal(np.nanargmax(whole.faces.probs, 1), np.nanargmax(probs, 1))
