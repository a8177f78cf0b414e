"""Ray Jobs entrypoint: the same job as ``ferbatch run``, connected to the cluster it runs in.

Usage (the entrypoint ``ferbatch submit`` writes): python -m jobs.run_ferbatch VIDEO_DIR [...] --out OUT [run options]
Inside a Ray Job, ``RAY_ADDRESS`` is set by the job supervisor, so ``--address auto`` connects to it.
"""

import sys

from ferbatch.cli import app


def main() -> None:
    args = sys.argv[1:]
    if "--address" not in args and "--no-ray" not in args:
        args += ["--address", "auto"]
    app(["run", *args])  # not --quiet: the job's log keeps the summary (a log is no terminal: no live bars)


if __name__ == "__main__":
    main()
