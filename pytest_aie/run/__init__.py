"""Generating and scoring a run: the run's models (:mod:`.registry`, :mod:`.model`), the
generation cache (:mod:`.cache`), the pipeline that batches every suite's requests and hands
its answers to the scorers (:mod:`.pipeline`), and suite-level scores (:mod:`.scoring`)."""
