"""Ray Jobs entrypoint: the same job as ``ferbatch run``, connected to the cluster it runs in.

Usage (as a job's entrypoint): python jobs/run_ferbatch.py VIDEO_DIR [VIDEO_DIR ...] --out OUT [ferbatch run options]
"""

import sys

from ferbatch.cli import app

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--address" not in args and "--no-ray" not in args:
        args += ["--address", "auto"]
    sys.exit(app(["run", *args]))
