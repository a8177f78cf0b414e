"""``ferbatch serve``: the HTTP API (needs the ``serve`` extra: FastAPI, uvicorn)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from ferbatch.cli.common import Backend, BackendOption, ClassifierOption, DetectorOption, ThreadsOption, fail

if TYPE_CHECKING:
    import uvicorn

__all__ = ["register", "TOKEN_ENV"]

TOKEN_ENV = "FERBATCH_TOKEN"


def read_token(token_file: Path | None) -> str:
    """The bearer token from ``token_file`` (first line) or the FERBATCH_TOKEN variable.

    Raises:
        ConfigError: neither gives a non-empty token, or the file cannot be read.
    """
    from ferbatch.errors import ConfigError

    if token_file is not None:
        try:
            lines = token_file.read_text().strip().splitlines()
        except OSError as e:
            raise ConfigError(f"--token-file {token_file} | cannot read it: {e.strerror or e}") from e
        tok = lines[0].strip() if lines else ""
        if not tok:
            raise ConfigError(f"--token-file {token_file} | is empty; put the bearer token on its first line")
        return tok
    tok = os.environ.get(TOKEN_ENV, "").strip()
    if not tok:
        raise ConfigError(f"no bearer token: give --token-file FILE or set {TOKEN_ENV}; the service refuses to run without one")
    return tok


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    token_file: Annotated[Path | None, typer.Option(help=f"File whose first line is the bearer token (else ${TOKEN_ENV}).")] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="Directory that POST /v1/jobs may read inputs from (jobs are off without it).")
    ] = None,
    jobs_dir: Annotated[Path | None, typer.Option(help="Where job datasets go (default: DATA_ROOT's sibling 'ferbatch-jobs').")] = None,
    detector: DetectorOption = None,
    classifier: ClassifierOption = None,
    backend: BackendOption = Backend.auto,
    threads: ThreadsOption = 0,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body, MiB.")] = 50.0,
    max_pixels: Annotated[
        int, typer.Option(help="Most pixels of an uploaded image (read from its header before decoding; 413 over it).", min=1)
    ] = 40_000_000,
    max_clip_pixels: Annotated[
        int, typer.Option(help="Most pixels per frame of an uploaded clip (413 over it); default 4K UHD.", min=1)
    ] = 3840 * 2160,
    max_clip_total_pixels: Annotated[
        int, typer.Option(help="Most pixels decoded from one clip in all; the clip is cut there (truncated: true).", min=1)
    ] = 300 * 1920 * 1080,
    clip_max_side: Annotated[
        int, typer.Option(help="Clip frames are downscaled right after decoding to this longest side, px.", min=32)
    ] = 1024,
    max_frames: Annotated[int, typer.Option(help="Most frames analysed per uploaded clip; the clip is cut there (truncated: true).")] = 300,
    max_batch: Annotated[int, typer.Option(help="Most frames per model call, across concurrent requests.")] = 16,
    max_pending: Annotated[
        int, typer.Option(help="Most requests admitted at once (a clip counts once, whatever its length); more get 503.")
    ] = 64,
    ray: Annotated[bool, typer.Option("--ray/--no-ray", help="Run jobs on Ray (local, or --address) instead of in-process.")] = False,
    address: Annotated[str | None, typer.Option(help="Ray cluster for jobs (implies --ray).")] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only warnings and errors: no address line, no request log, no stop line.")
    ] = False,
) -> None:
    """Serve the models over HTTP: POST /v1/analyze (image or clip -> faces, boxes, 8 FER+
    probabilities), POST /v1/jobs, GET /v1/jobs/{id} and GET /v1/jobs/{id}/summary; docs at /docs.

    Example: FERBATCH_TOKEN=s3cret ferbatch serve --port 8000 --data-root videos/

    /v1/analyze takes a multipart file, or JSON {"image": "<base64 or data: URI>"} or {"path": "<file
    under --data-root>"} (refused without --data-root); URLs are refused: nothing is fetched.

    It prints uvicorn's start-up lines (the address; "Application startup complete" once the models
    are loaded), one line per request, and a line when stopped (Ctrl-C / SIGTERM); -q prints only
    warnings and errors.

    Memory per request is bounded: the body (up to --max-upload-mb, in memory once: it is passed on
    as it arrives and the form parser spools it to a temporary file), plus for an image its decoded pixels (3 bytes each, at most --max-pixels: 120 MB at
    the default), or for a clip FFmpeg's one-thread decoder state (a few frames of at most
    --max-clip-pixels, 1.5 bytes per pixel: about 12 MB per 4K frame) and one model call of
    --max-batch frames downscaled to --clip-max-side (16 x 1.8 MB at the defaults); a 4K clip
    measured 45-75 MB at its peak. At most
    --max-pending requests are admitted at once. Unauthenticated requests get 401 from their headers,
    before any of the body is read.

    Exit status: 2 bad settings (no token, missing extra, bad model).
    """
    from ferbatch.config import JobConfig
    from ferbatch.errors import ConfigError, FerbatchError

    try:
        token = read_token(token_file)
        try:
            import uvicorn

            from ferbatch.service.app import ServiceSettings, create_app
        except ImportError as e:
            raise ConfigError(f"ferbatch serve | needs the serve extra (pip install 'ferbatch[serve]'): {e}") from e
        if data_root is not None and not data_root.is_dir():
            raise ConfigError(f"--data-root {data_root} | not a directory")
        cfg = JobConfig(detector=detector, classifier=classifier, backend=backend.value, threads_per_worker=threads, workers=1)
        settings = ServiceSettings(
            token=token,
            cfg=cfg,
            max_upload_bytes=int(max_upload_mb * 1024 * 1024),
            max_pixels=max_pixels,
            max_clip_pixels=max_clip_pixels,
            max_clip_total_pixels=max_clip_total_pixels,
            clip_max_side=clip_max_side,
            max_frames=max_frames,
            max_batch=max_batch,
            max_pending=max_pending,
            data_root=data_root,
            jobs_dir=(jobs_dir or (data_root.resolve().parent / "ferbatch-jobs")) if data_root else None,
            use_ray=ray or address is not None,
            address=address,
        )
        from ferbatch.models.load import load_models

        app = create_app(settings, load_models(cfg))  # loaded here: a bad model is exit 2, not a failed start-up
    except FerbatchError as e:
        fail(e)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning" if quiet else "info", access_log=not quiet)
    _stop_line_server(config, quiet).run()


def _stop_line_server(config: uvicorn.Config, quiet: bool) -> uvicorn.Server:
    """A uvicorn server that prints one line on stderr when a stop signal arrives, unless ``quiet``."""
    import uvicorn

    class StopLine(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not quiet and not self.should_exit:
                name = signal.Signals(sig).name if sig in {s.value for s in signal.Signals} else str(sig)
                print(f"ferbatch serve | {name}: stopping (requests in flight finish first)", file=sys.stderr, flush=True)
            super().handle_exit(sig, frame)

    return StopLine(config)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command()(serve)
