"""A static HTML report with matplotlib plots: per video, an emotion timeline (stacked shares over
time), an emotion distribution bar chart and the summary numbers. No server, no JavaScript."""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np

from ferbatch.dataset.api import Dataset
from ferbatch.labels import EMOTION_COLORS as COLORS
from ferbatch.labels import EMOTIONS

__all__ = ["write_report"]


def _bin_for(duration_s: float | None) -> float:
    """A timeline bin giving about 60-120 bins: 0.25 s for short clips, longer for long ones."""
    d = duration_s or 1.0
    for b in (0.25, 0.5, 1, 2, 5, 10, 30, 60, 300):
        if d / b <= 120:
            return float(b)
    return 600.0


def _plot_timeline(ds: Dataset, vid: str, path: str, duration: float | None, png: Path) -> float:
    import matplotlib.pyplot as plt

    b = _bin_for(duration)
    t = ds.timeline(vid, b, by_face=False).to_pydict()
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=110)
    if t["t_s"]:
        x = np.asarray(t["t_s"]) + b / 2
        ys = [np.asarray(t[f"share_{e}"], float) for e in EMOTIONS]
        ax.stackplot(x, ys, labels=EMOTIONS, colors=[COLORS[e] for e in EMOTIONS], step=None)
        ax.set_xlim(0, max(duration or 0, x[-1] + b / 2))
    else:
        ax.text(0.5, 0.5, "no faces found", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"share of faces per {b:g} s")
    ax.set_title(f"{path}: emotion over time", fontsize=10)
    if t["t_s"]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return b


def _plot_tracks(ds: Dataset, vid: str, path: str, duration: float | None, png: Path, max_tracks: int = 20) -> int:
    """One horizontal ribbon per face track: its smoothed emotion at each frame it was seen."""
    import matplotlib.pyplot as plt

    rows = ds.con.execute(
        """SELECT track_id, pts_ms / 1000 AS t, coalesce(smooth_emotion, emotion) AS e FROM faces
           WHERE video_id = ? AND track_id IN (SELECT track_id FROM tracks WHERE video_id = ? ORDER BY frames DESC LIMIT ?)
           ORDER BY track_id, pts_ms""",
        [vid, vid, max_tracks],
    ).fetchall()
    tids = sorted({r[0] for r in rows})
    if not tids:
        return 0
    fig, ax = plt.subplots(figsize=(9, max(2.2, 0.9 + 0.35 * len(tids))), dpi=110)
    y = {t: i for i, t in enumerate(tids)}
    for e in EMOTIONS:
        pts = [(r[1], y[r[0]]) for r in rows if r[2] == e]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.scatter(xs, ys, marker="|", s=160, color=COLORS[e], label=e, linewidths=2)
    ax.set_yticks(range(len(tids)), [f"track {t}" for t in tids], fontsize=8)
    ax.set_ylim(-0.7, len(tids) - 0.3)
    ax.set_xlim(0, duration or None)
    ax.set_xlabel("time (s)")
    ax.set_title(f"{os.path.basename(path)}: smoothed emotion per face track", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return len(tids)


def _plot_distribution(row: dict, path: str, png: Path) -> None:
    import matplotlib.pyplot as plt

    shares = [row.get(f"share_{e}") or 0.0 for e in EMOTIONS]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=110)
    bars = ax.bar(EMOTIONS, shares, color=[COLORS[e] for e in EMOTIONS])
    for bar, v in zip(bars, shares, strict=True):
        if v > 0:
            ax.text(bar.get_x() + bar.get_width() / 2, v + 0.01, f"{v:.0%}", ha="center", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of faces")
    ax.set_title(f"{os.path.basename(path)}: emotion distribution", fontsize=9)
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def write_report(out_dir: str | os.PathLike[str], to: str | os.PathLike[str]) -> Path:
    """Write ``index.html`` and its PNGs under ``to``; returns the HTML path.

    Raises:
        OutputError: ``out_dir`` is not a ferbatch dataset.
    """
    import matplotlib

    matplotlib.use("Agg")
    with Dataset(out_dir) as ds:  # closed before exit: Arrow's S3 client must not outlive the interpreter
        return _write_report(ds, out_dir, Path(to))


def _write_report(ds: Dataset, out_dir: str | os.PathLike[str], dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    rows = ds.summary().to_pylist()
    parts = []
    for row in rows:
        vid, path = row["video_id"], row["path"]
        e = html.escape
        if row["status"] == "failed":
            err = ds.con.execute("SELECT error FROM videos WHERE video_id = ?", [vid]).fetchall()[0][0]
            parts.append(f"<section><h2>{e(path)}</h2><p class=bad>failed: {e(err or '')}</p></section>")
            continue
        tl, dist = f"{vid}-timeline.png", f"{vid}-distribution.png"
        b = _plot_timeline(ds, vid, path, row["duration_s"], dest / tl)
        _plot_distribution(row, path, dest / dist)
        tr = f"{vid}-tracks.png"
        n_tracks = _plot_tracks(ds, vid, path, row["duration_s"], dest / tr)
        nums = [
            ("duration", f"{row['duration_s'] or 0:.1f} s"),
            ("frames", row["frames"]),
            ("frames with faces", row["frames_with_faces"]),
            ("mean faces per frame", f"{row['mean_faces_per_frame'] or 0:.2f}"),
            ("faces", row["faces"]),
            ("dominant emotion", row["dominant_emotion"] or "-"),
            ("face tracks", n_tracks),
            ("status", row["status"]),
        ]
        table = "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in nums)
        parts.append(f"""<section><h2>{e(path)}</h2><table>{table}</table>
<img src="{e(tl)}" alt="emotion shares per {b:g} s over time"><img src="{e(dist)}" alt="emotion distribution">
{f'<img src="{e(tr)}" alt="emotion per face track">' if n_tracks else ""}</section>""")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>ferbatch report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} section{{border-top:1px solid #ccc;padding:1em 0}}
table{{border-collapse:collapse;margin-bottom:.5em}} th,td{{text-align:left;padding:2px 10px}} img{{max-width:100%;vertical-align:top}}
.bad{{color:#b00}}</style></head><body><h1>ferbatch report</h1>
<p>{len(rows)} videos from <code>{html.escape(str(out_dir))}</code>. Shares are the fraction of detected faces whose most
probable emotion is each class (FER+ order).</p>
{"".join(parts)}</body></html>"""
    index = dest / "index.html"
    index.write_text(page)
    return index
