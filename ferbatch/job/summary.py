"""The outcome of a job, as :func:`ferbatch.job.run_job` returns it and the CLI prints it."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["JobSummary"]


@dataclass(repr=False)
class JobSummary:
    """The outcome of :func:`run_job`.

    Attributes:
        videos: inputs found; skipped: already complete from an earlier run;
        ok, partial, failed: videos by status in this run; frames, faces: rows written this run;
        seconds: wall time; startup_seconds: the part of it before the workers were ready (Ray,
            worker start, model loading); retried: shards re-run because their worker process died;
        backend: the runtime each worker reported; runner: "ray" or "in-process" (and why);
        errors: video rel_path -> message.
    """

    videos: int = 0
    skipped: int = 0
    ok: int = 0
    partial: int = 0
    failed: int = 0
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    startup_seconds: float = 0.0
    retried: int = 0
    backend: str = ""
    runner: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def frames_per_s(self) -> float:
        """Frames processed per second of wall time (0 if nothing ran)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def __repr__(self) -> str:
        """A few short lines: counts by status, rows and speed, backend and runner, then each error."""
        n = self.videos
        lines = [
            f"JobSummary: {n} video{'s' if n != 1 else ''}: {self.ok} ok, {self.partial} partial, {self.failed} failed"
            + (f", {self.skipped} skipped (already done)" if self.skipped else ""),
            f"  {self.frames:,} frames, {self.faces:,} faces in {self.seconds:.1f} s "
            f"(start-up {self.startup_seconds:.1f} s): {self.frames_per_s:.1f} frames/s",
            f"  backend: {self.backend or '-'}",
            f"  runner: {self.runner or '-'}",
        ]
        if self.retried:
            lines.append(f"  shards retried: {self.retried}")
        if self.errors:
            lines.append("  errors:")
            lines += [f"    {path}: {err}" for path, err in self.errors.items()]
        return "\n".join(lines)

    __str__ = __repr__
