"""Media: probing and the demux-only index (:mod:`.probe`), shard planning (:mod:`.shards`) and exact
decoding (:mod:`.decode`). Knows nothing about models, Ray or the dataset."""
