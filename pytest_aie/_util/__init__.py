"""Small private helpers under every stage: files and locks (:mod:`.files`), credential
scrubbing (:mod:`.redact`), text for terminals (:mod:`.text`), reading data files row by row
(:mod:`.rows`) and code digests (:mod:`.digest`). Nothing here imports another part of
pytest-aie except :mod:`pytest_aie.errors`."""
