"""The pure pipeline without Ray: sharding does not change the rows."""

import numpy as np
from conftest import WOLFGANG

from ferbatch.media.probe import probe_video
from ferbatch.media.shards import plan_shards
from ferbatch.pipeline import process_shard


def test_one_shard_and_many_shards_give_the_same_rows(models):
    _, index = probe_video(WOLFGANG)
    whole = process_shard(plan_shards("v", str(WOLFGANG), index, 0)[0], models)
    parts = [process_shard(s, models, detect_batch=3, prefetch=0) for s in plan_shards("v", str(WOLFGANG), index, 100)]
    assert len(parts) >= 4
    np.testing.assert_array_equal(whole.frame_idx, np.concatenate([p.frame_idx for p in parts]))
    np.testing.assert_array_equal(whole.face_count, np.concatenate([p.face_count for p in parts]))
    np.testing.assert_allclose(whole.faces.boxes, np.concatenate([p.faces.boxes for p in parts]), atol=1e-2)
    np.testing.assert_allclose(whole.faces.probs, np.concatenate([p.faces.probs for p in parts]), atol=1e-4, equal_nan=True)
