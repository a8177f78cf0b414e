"""Balanced shard plans: a multiple of the workers, cut at keyframes, no lone tail, every frame once."""

from __future__ import annotations

import numpy as np
import pytest
from badinputs import encode
from conftest import WOLFGANG, read_frames

from ferbatch.media.probe import probe_video
from ferbatch.media.shards import plan_shards


@pytest.fixture(scope="module")
def long_index(tmp_path_factory):
    """A real 1,416-frame H.264 clip (WolfgangLanger x3) with a keyframe every 48 frames."""
    frames = read_frames(WOLFGANG)
    path = encode(tmp_path_factory.mktemp("bal") / "long.mp4", frames * 3, options={"g": "48", "preset": "ultrafast"})
    return probe_video(path)[1], str(path)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_plan_is_balanced_and_keyframe_aligned(long_index, workers):
    index, path = long_index
    n = len(index.pts)
    shards = plan_shards("v", path, index, 500, workers=workers)
    assert len(shards) % workers == 0 and len(shards) >= 3  # ceil(1416 / 500) = 3 rounded up to the workers
    sizes = np.array([s.frames for s in shards])
    assert sizes.sum() == n and sizes.max() - sizes.min() <= 2 * 48  # within two GOPs of each other
    keys = set(np.searchsorted(index.pts, index.keyframes).tolist())
    assert all(s.start in keys for s in shards)
    assert [s.start for s in shards[1:]] == [s.end for s in shards[:-1]] and shards[-1].end is None


def test_short_video_splits_between_workers(long_index):
    index, path = long_index
    assert len(plan_shards("v", path, index, 1500, workers=2)) == 2  # one shard would leave a worker idle
    assert len(plan_shards("v", path, index, 1500, workers=1)) == 1
    assert len(plan_shards("v", path, index, 0, workers=2)) == 1  # 0 = one shard per video
