"""``ferbatch watch``: a live stream or camera -> rolling Parquet parts."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ferbatch.cli.common import Backend, BackendOption, ClassifierOption, DetectorOption, ThreadsOption, console, fail

__all__ = ["register"]


def watch(
    source: Annotated[
        str, typer.Argument(help="A stream URL (rtsp, http, udp, tcp, srt, HLS), a V4L2 device (/dev/video0) or a file.", metavar="SOURCE")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory; each watch adds a session (a video_id) to it.")],
    name: Annotated[str, typer.Option(help="Prefix of the session's video_id.")] = "live",
    part_seconds: Annotated[float, typer.Option(help="Seconds of rows per Parquet part.")] = 10.0,
    batch: Annotated[int, typer.Option(help="Most frames per model call.")] = 4,
    max_queue: Annotated[int, typer.Option(help="Frames waiting for the models at most; older ones are dropped and counted.")] = 4,
    give_up: Annotated[float, typer.Option(help="Stop after this many seconds without a frame; 0 = reconnect forever.")] = 0.0,
    detector: DetectorOption = None,
    classifier: ClassifierOption = None,
    backend: BackendOption = Backend.auto,
    threads: ThreadsOption = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No line per part.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty --out that is not a ferbatch dataset.")] = False,
) -> None:
    """Analyse a live source in near real time: frames the models cannot keep up with are dropped
    (counted, and recorded as frames rows with face_count NULL); the source is reopened with
    back-off when it fails; rows land in OUT as Parquet parts every --part-seconds.
    Ctrl-C or SIGTERM writes the last part and exits 0. The session holds OUT's lock: a run,
    compact or another watch on OUT is refused while it lasts, and a watch into a dataset made
    with other result-changing settings is refused.

    Example: ferbatch watch rtsp://camera.local/stream --out live/ --part-seconds 5

    Exit status: 0 stopped by Ctrl-C/SIGTERM or the source ended; 1 the source was lost for
    --give-up seconds; 2 bad settings or models.
    """
    from ferbatch.config import JobConfig
    from ferbatch.errors import FerbatchError
    from ferbatch.live.watch import WatchStats
    from ferbatch.live.watch import watch as run_watch
    from ferbatch.models.load import load_models

    stop = threading.Event()

    def report(st: WatchStats) -> None:
        if not quiet:
            console.print(
                f"part {st.parts}: {st.analysed} frames analysed, {st.dropped} dropped (behind), {st.faces} faces, "
                f"lag {st.lag_ms:.0f} ms, {st.reconnects} reconnects"
                + (f" [yellow]({escape(st.last_error)})[/yellow]" if st.last_error else ""),
                highlight=False,
                soft_wrap=True,
            )

    try:
        cfg = JobConfig(
            detector=detector, classifier=classifier, backend=backend.value, threads_per_worker=threads, workers=1, detect_batch=batch
        )
        models = load_models(cfg)
    except FerbatchError as e:
        fail(e)
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        st = run_watch(
            source,
            out,
            models,
            cfg=cfg,
            name=name,
            part_seconds=part_seconds,
            batch=batch,
            max_queue=max_queue,
            give_up_s=give_up,
            stop=stop,
            on_part=report,
            force=force,
        )
    except FerbatchError as e:
        fail(e)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        models.close()
    console.print(
        f"{escape(st.video_id)}: {st.status}; {st.received} frames received, {st.analysed} analysed, {st.dropped} dropped, "
        f"{st.faces} faces, {st.parts} parts, {st.reconnects} reconnects -> {escape(str(out))}",
        highlight=False,
        soft_wrap=True,
    )
    if st.status == "source lost":
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``watch`` to ``app``."""
    app.command()(watch)
