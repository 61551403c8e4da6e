"""The report stage's parts: Markdown sections (:mod:`.sections`), provenance (:mod:`.provenance`) and the
self-contained HTML page (:mod:`.html`)."""
