"""``ferbatch serve``: the HTTP API (FastAPI) over loaded models and the local job runner.

:mod:`.batcher` batches frames of concurrent requests into one model call, :mod:`.media` turns an
upload into frames, :mod:`.jobs` runs directory jobs, :mod:`.middleware` checks the token and the
body size before a route runs, :mod:`.app` wires them into FastAPI.
"""
