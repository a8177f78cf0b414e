"""The pure pipeline without Ray: sharding does not change the rows."""

import numpy as np

from conftest import WOLFGANG
from ferbatch.job import VideoTask, plan_shards
from ferbatch.pipeline import process_shard
from ferbatch.video import probe_video


def test_one_shard_and_many_shards_give_the_same_rows(models):
    _, index = probe_video(WOLFGANG)
    task = VideoTask("v", str(WOLFGANG), "v.mp4", 0, 0)
    whole = process_shard(plan_shards(task, index, 0)[0], models)
    parts = [process_shard(s, models, detect_batch=3, prefetch=0) for s in plan_shards(task, index, 100)]
    assert len(parts) >= 4
    np.testing.assert_array_equal(whole[0][0], np.concatenate([p[0][0] for p in parts]))
    np.testing.assert_array_equal(whole[0][2], np.concatenate([p[0][2] for p in parts]))
    np.testing.assert_allclose(whole[1].boxes, np.concatenate([p[1].boxes for p in parts]), atol=1e-2)
    np.testing.assert_allclose(whole[1].probs, np.concatenate([p[1].probs for p in parts]), atol=1e-4, equal_nan=True)
