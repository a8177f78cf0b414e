"""The dataset a job writes and everything that reads it: schemas (:mod:`.schema`), part files and
the manifest on disk (:mod:`.store`), DuckDB access (:mod:`.query`), the Python API
(:mod:`.api`: ``Dataset``, ``open``), the HTML report (:mod:`.report`) and annotated videos
(:mod:`.annotate`)."""
