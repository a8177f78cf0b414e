"""Decoding: exact frame indices and timestamps from pts, shards that cover every frame once."""

import av
import numpy as np
import pytest
from conftest import FACE_NOFACE, NO_FACE, WOLFGANG

from ferbatch.errors import DecodeError
from ferbatch.media.decode import iter_frames
from ferbatch.media.probe import probe_video
from ferbatch.media.shards import plan_shards


def test_wolfgang_has_472_frames_in_order():
    info, index = probe_video(WOLFGANG)
    frames = list(iter_frames(WOLFGANG, index))
    assert [f.idx for f in frames] == list(range(472))
    ts = np.array([f.pts_ms for f in frames])
    assert np.all(np.diff(ts) > 0)
    assert (info.width, info.height) == (640, 360) and frames[0].image.shape == (360, 640, 3)
    assert abs(ts[1] - ts[0] - 1000 / info.fps) < 1.0


def test_face_noface_timestamps_come_from_pts():
    with av.open(str(FACE_NOFACE)) as c:
        s = c.streams.video[0]
        expected = [float(f.pts * s.time_base) * 1000 for f in c.decode(s)]
    _, index = probe_video(FACE_NOFACE)
    got = [f.pts_ms for f in iter_frames(FACE_NOFACE, index)]
    assert len(got) == len(expected)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert len(set(np.round(np.diff(got), 3))) > 1  # variable timing: more than one frame interval


def test_no_face_counts_only_decodable_frames():
    with av.open(str(NO_FACE)) as c:
        n_decoded = sum(1 for _ in c.decode(c.streams.video[0]))
    info, index = probe_video(NO_FACE)
    frames = list(iter_frames(NO_FACE, index))
    assert len(frames) == n_decoded
    assert info.packets >= n_decoded
    assert len({f.idx for f in frames}) == len(frames)


@pytest.mark.parametrize("target", [50, 100, 200])
def test_shards_cover_every_frame_once(target):
    _, index = probe_video(WOLFGANG)
    shards = plan_shards("v", str(WOLFGANG), index, target)
    assert len(shards) > 1
    seen = []
    for s in shards:
        got = [f.idx for f in iter_frames(s.path, index, s.start, s.end)]
        assert got == list(range(s.start, s.end if s.end is not None else len(index.pts)))
        seen += got
    assert seen == list(range(472))


def test_not_a_video_is_a_decode_error(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(DecodeError, match="empty"):
        probe_video(empty)
    with pytest.raises(DecodeError, match="not a video"):
        probe_video(text)
