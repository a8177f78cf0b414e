"""The job layer: inputs (scan, ids, fingerprints), workers (actor, pools, retries), the manifest
(resume, videos table), the tracking pass and cluster submission. It schedules and records; it
never decodes or infers itself (that is :mod:`ferbatch.pipeline`, run inside the workers).
"""

from ferbatch.job.inputs import VideoTask, scan_inputs
from ferbatch.job.run import run_job
from ferbatch.job.summary import JobSummary

__all__ = ["JobSummary", "VideoTask", "run_job", "scan_inputs"]
