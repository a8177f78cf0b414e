"""Canned questions over a dataset (DuckDB SQL): per-video summary, emotion timeline, moments.

:func:`open` gives a :class:`Dataset` with the same answers for Python users::

    import ferbatch
    ds = ferbatch.open("out/")
    ds.summary()                       # pyarrow.Table, one row per video
    ds.timeline("WolfgangLanger", 1.0) # shares per 1 s bin and face index
    ds.sql("SELECT emotion, count(*) FROM faces GROUP BY 1").fetchall()
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow as pa

from ferbatch.dataset.query import connect, naming_damaged_parts, run_sql
from ferbatch.errors import ConfigError, OutputError
from ferbatch.labels import EMOTION_ALIASES, EMOTIONS, emotion_of

__all__ = ["Dataset", "open", "parse_duration", "parse_emotion", "emotion_sql", "summary_sql", "timeline_sql", "moments_sql"]

# EMOTION_RULE (ferbatch.labels) in SQL, over rows with a weight column ``w`` (their frames' span_ms):
# time-weighted shares of the per-row labels, time-weighted mean probabilities, and the emotion = the
# argmax of those means (first class on ties, like ferbatch.labels.argmax_known)
_SHARES = ", ".join(f"sum(w * (emotion = '{e}')::DOUBLE) / sum(w) AS share_{e}" for e in EMOTIONS)
_MEANS = ", ".join(f"sum(w * prob_{e}) / sum(CASE WHEN prob_{e} IS NOT NULL THEN w END) AS mean_prob_{e}" for e in EMOTIONS)
_ARGMAX = "[" + ", ".join(f"'{e}'" for e in EMOTIONS) + "][list_position(l, list_max(l))]"
# faces with their frame's weight (span_ms; 1 where a dataset of an older version has none)
_WEIGHTED_FACES = """(SELECT f.*, coalesce(fr.span_ms, 1.0) AS w FROM faces f
                      LEFT JOIN frames fr ON fr.video_id = f.video_id AND fr.frame_idx = f.frame_idx)"""


def emotion_sql(prefix: str = "") -> str:
    """The emotion of a group under :data:`ferbatch.labels.EMOTION_RULE`, as a SQL expression over
    columns ``{prefix}mean_prob_<emotion>`` (NULL when every mean is NULL)."""
    lst = ", ".join(f"coalesce({prefix}mean_prob_{e}, -1.0)" for e in EMOTIONS)
    any_known = " OR ".join(f"{prefix}mean_prob_{e} IS NOT NULL" for e in EMOTIONS)
    return f"CASE WHEN {any_known} THEN (SELECT {_ARGMAX} FROM (SELECT [{lst}] AS l)) END"


def parse_duration(text: str | float) -> float:
    """Seconds from "0.5s", "500ms", "2m", "1.5" (seconds).

    Raises:
        ConfigError: not a duration.
    """
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|min)?\s*", str(text))
    if not m:
        raise ConfigError(f"duration {text!r} | expected a number with an optional unit ms, s or m (e.g. 0.5s)")
    v = float(m.group(1))
    return v / 1000 if m.group(2) == "ms" else v * 60 if m.group(2) in ("m", "min") else v


def summary_sql() -> str:
    """One row per video: duration, frames analysed, frames with faces, mean faces per frame, faces,
    share of each emotion among its faces and the dominant emotion, both weighted by time
    (:data:`ferbatch.labels.EMOTION_RULE`: the same rule as ``tracks.dominant_emotion``)."""
    return f"""
        WITH fr AS (SELECT video_id, count(*) AS frames, count(*) FILTER (WHERE face_count > 0) AS frames_with_faces,
                           sum(face_count * coalesce(span_ms, 1.0)) / sum(coalesce(span_ms, 1.0)) AS mean_faces_per_frame
                    FROM frames GROUP BY video_id),
             fa AS (SELECT video_id, count(*) AS faces, {_SHARES}, {_MEANS} FROM {_WEIGHTED_FACES} GROUP BY video_id)
        SELECT v.video_id, v.path, v.status, v.duration_s, coalesce(fr.frames, 0) AS frames,
               coalesce(fr.frames_with_faces, 0) AS frames_with_faces, fr.mean_faces_per_frame,
               coalesce(fa.faces, 0) AS faces, {", ".join(f"fa.share_{e}" for e in EMOTIONS)}, {emotion_sql("fa.")} AS dominant_emotion
        FROM videos v LEFT JOIN fr USING (video_id) LEFT JOIN fa USING (video_id)
        ORDER BY v.path"""


def timeline_sql(video_id: str, bin_s: float, by: str | None = "face_idx") -> str:
    """Emotion shares and mean probabilities per time bin (``t_s`` = bin start in seconds), weighted
    by time (:data:`ferbatch.labels.EMOTION_RULE`), per ``by`` ("face_idx", "track_id" — rows without
    a track left out — or None for all faces together)."""
    if bin_s <= 0:
        raise ConfigError(f"--bin | received {bin_s}; expected > 0")
    if by not in (None, "face_idx", "track_id"):
        raise ConfigError(f"timeline by {by!r} | expected face_idx, track_id or None")
    key = f"{by}, " if by else ""
    where = " AND track_id IS NOT NULL" if by == "track_id" else ""
    return f"""
        SELECT floor(pts_ms / {bin_s * 1000.0!r}) * {bin_s!r} AS t_s, {key}count(*) AS faces, {_SHARES}, {_MEANS}
        FROM {_WEIGHTED_FACES} WHERE video_id = {_lit(video_id)}{where}
        GROUP BY ALL ORDER BY t_s{", " + by if by else ""}"""


def parse_emotion(name: str) -> str:
    """The FER+ emotion ``name`` means: a FER+ name or a common one (``happy``, ``sad``, ``angry``:
    :data:`ferbatch.labels.EMOTION_ALIASES`), any case.

    Raises:
        ConfigError: none of them.
    """
    emotion = emotion_of(name)
    if emotion is None:
        aliases = ", ".join(EMOTION_ALIASES)
        raise ConfigError(f"--emotion | received {name!r}; expected one of {', '.join(EMOTIONS)} (or {aliases})")
    return emotion


def moments_sql(emotion: str, min_prob: float, min_duration_s: float) -> str:
    """Time spans (runs of consecutive decoded frames) in which some face's emotion is ``emotion``
    with probability >= ``min_prob``, lasting >= ``min_duration_s``. ``end_s`` is the time of the
    first frame after the span (exclusive), or the span's last frame at the end of a video.
    ``emotion``: as :func:`parse_emotion` takes it (``"happy"`` is ``"happiness"``)."""
    emotion = parse_emotion(emotion)
    return f"""
        WITH f AS (SELECT video_id, frame_idx, pts_ms,
                          row_number() OVER (PARTITION BY video_id ORDER BY frame_idx) AS rn,
                          lead(pts_ms) OVER (PARTITION BY video_id ORDER BY frame_idx) AS next_pts_ms FROM frames),
             hit AS (SELECT video_id, frame_idx, max(prob_{emotion}) AS p FROM faces
                     WHERE emotion = '{emotion}' AND prob_{emotion} >= {float(min_prob)!r} GROUP BY ALL),
             h AS (SELECT f.*, hit.p, f.rn - row_number() OVER (PARTITION BY f.video_id ORDER BY f.rn) AS grp
                   FROM f JOIN hit USING (video_id, frame_idx)),
             spans AS (SELECT video_id, min(pts_ms) / 1000 AS start_s,
                              coalesce(arg_max(next_pts_ms, rn), max(pts_ms)) / 1000 AS end_s,
                              count(*) AS frames, avg(p) AS mean_prob, max(p) AS peak_prob
                       FROM h GROUP BY video_id, grp)
        SELECT s.video_id, v.path, '{emotion}' AS emotion, s.start_s, s.end_s, s.end_s - s.start_s AS duration_s,
               s.frames, s.mean_prob, s.peak_prob
        FROM spans s JOIN videos v USING (video_id)
        WHERE s.end_s - s.start_s >= {float(min_duration_s)!r}
        ORDER BY v.path, s.start_s"""


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


class Dataset:
    """A ferbatch output directory opened for questions (read-only DuckDB views faces/frames/videos/tracks).

    Answers are pyarrow Tables (``summary()``, ``timeline()``, ``moments()``, ``tracks()``) or DuckDB
    relations (``sql()``, ``faces``, ``frames``, ``videos``); both convert without copies where they
    can: ``table.to_pandas()`` (the ``pandas`` extra), ``polars.from_arrow(table)``,
    ``relation.df()`` / ``relation.pl()`` / ``relation.arrow()``.

    Usable as a context manager (``with ferbatch.open("out/") as ds:``), which closes the DuckDB
    connection on exit; :meth:`close` does the same.

    Raises:
        OutputError: not a ferbatch output directory.
    """

    def __init__(self, out_dir: str | os.PathLike[str]):
        self.path = out_dir
        self.con = connect(out_dir)

    def __repr__(self) -> str:
        try:
            by_status = self.con.execute("SELECT status, count(*) FROM videos GROUP BY 1 ORDER BY 1").fetchall()
            faces = self.con.execute("SELECT count(*) FROM faces").fetchall()[0][0]
        except Exception:  # a closed connection
            return f"<ferbatch.Dataset {str(self.path)!r} (closed)>"
        n = sum(c for _, c in by_status)
        status = ", ".join(f"{c} {s}" for s, c in by_status)
        return f"<ferbatch.Dataset {str(self.path)!r}: {n} videos ({status or 'none'}), {faces} face rows>"

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the DuckDB connection (relations from it stop working)."""
        self.con.close()

    def sql(self, query: str):
        """A DuckDB relation for one SELECT over faces/frames/videos."""
        return run_sql(self.con, query)

    @property
    def faces(self):
        """DuckDB relation over the faces table."""
        return self.con.table("faces")

    @property
    def frames(self):
        """DuckDB relation over the frames table."""
        return self.con.table("frames")

    @property
    def videos(self):
        """DuckDB relation over the videos table."""
        return self.con.table("videos")

    @naming_damaged_parts
    def video_id(self, name: str) -> str:
        """Resolve a video to its id: the file's absolute path as the job saw it (from the
        manifest), an existing file's content (its content hash, as the job identifies videos: a
        renamed, moved or copied file is still found), a video id, the relative path, the file name
        or the stem, first unique hit wins.

        Raises:
            OutputError: no such video, or the name is ambiguous.
        """
        if os.path.isabs(name) or os.path.exists(name):
            target = str(Path(name).absolute())
            hits = [
                v
                for (v,) in self.con.execute(
                    "SELECT video_id FROM videos WHERE abs_path = ? OR list_contains(paths, ?)", [target, target]
                ).fetchall()
            ]
            if len(hits) == 1:
                return hits[0]
            same = self._same_content(name) if os.path.isfile(name) else []
            if len(same) == 1:
                return same[0]
            name = os.path.basename(name)
        rows = self.con.execute("SELECT video_id, path FROM videos").fetchall()
        for key in (
            lambda v, p: v,
            lambda v, p: p,
            lambda v, p: os.path.basename(p),
            lambda v, p: os.path.splitext(os.path.basename(p))[0],
        ):
            hits = [v for v, p in rows if key(v, p) == name]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise OutputError(f"video {name!r} | matches {len(hits)} videos; give the video_id ({', '.join(hits)})")
        raise OutputError(f"video {name!r} | not in {self.path}; known: {', '.join(p for _, p in rows)}")

    def _same_content(self, path: str) -> list[str]:
        """The ids of the videos whose content hash is the file's: the sampled hash, else (a
        dataset made with ``--full-hash``) the whole file's."""
        from ferbatch.dataset.videos import content_hash

        size = os.path.getsize(path)
        for full in (False, True):
            try:
                digest = content_hash(path, size, full=full)
            except OSError:
                return []
            hits = [v for (v,) in self.con.execute("SELECT video_id FROM videos WHERE content_hash = ?", [digest]).fetchall()]
            if hits:
                return hits
        return []

    @naming_damaged_parts
    def summary(self) -> pa.Table:
        """See :func:`summary_sql`."""
        return self.con.sql(summary_sql()).to_arrow_table()

    @naming_damaged_parts
    def timeline(self, video: str, bin_s: float | str = 1.0, by_face: bool = True) -> pa.Table:
        """See :func:`timeline_sql`; ``video`` as accepted by :meth:`video_id`. With ``by_face``
        rows go per track when the video has tracks, else per face index."""
        vid = self.video_id(video)
        by = None
        if by_face:
            tracked = self.con.execute("SELECT count(track_id) FROM faces WHERE video_id = ?", [vid]).fetchall()[0][0]
            by = "track_id" if tracked else "face_idx"
        return self.con.sql(timeline_sql(vid, parse_duration(bin_s), by)).to_arrow_table()

    @naming_damaged_parts
    def tracks(self, video: str | None = None) -> pa.Table:
        """The tracks table (all videos, or one)."""
        where = f" WHERE video_id = {_lit(self.video_id(video))}" if video else ""
        return self.con.sql(f"SELECT * FROM tracks{where} ORDER BY video_id, track_id").to_arrow_table()

    @naming_damaged_parts
    def moments(self, emotion: str, min_prob: float = 0.8, min_duration: float | str = 0.5) -> pa.Table:
        """See :func:`moments_sql`."""
        return self.con.sql(moments_sql(emotion, min_prob, parse_duration(min_duration))).to_arrow_table()

    @naming_damaged_parts
    def video_faces(self, video: str) -> pa.Table:
        """One video's face rows, in frame order: ``t_s`` (seconds) first, then every column of
        the faces table; ``video`` as :meth:`video_id` takes it (an id, a path, a name, a copy)."""
        vid = self.video_id(video)
        return self.con.sql(
            f"SELECT pts_ms / 1000 AS t_s, * FROM faces WHERE video_id = {_lit(vid)} ORDER BY frame_idx, face_idx"
        ).to_arrow_table()

    def video_df(self, video: str):
        """:meth:`video_faces` as a pandas DataFrame, for notebooks (``df.plot(x="t_s",
        y="prob_happiness")``); needs the ``pandas`` extra: ``pip install 'ferbatch[pandas]'``."""
        try:
            import pandas  # noqa: F401
        except ImportError as e:
            raise ImportError("Dataset.video_df | needs pandas: pip install 'ferbatch[pandas]'") from e
        return self.video_faces(video).to_pandas()


def open(out_dir: str | os.PathLike[str]) -> Dataset:  # noqa: A001 - the documented entry point
    """Open a ferbatch output directory; see :class:`Dataset`."""
    return Dataset(out_dir)
