"""Frames held in memory, and live sources: in-memory inference (:mod:`.infer`) and
``ferbatch watch`` (:mod:`.watch`)."""
