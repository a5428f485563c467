"""The latency eval family: the ``latency`` marker's scorer and budgets (:mod:`.marker`),
timing probes that measure what an engine's own timings cannot (:mod:`.probe`), and the
memory-bandwidth and compute utilisation figures (MBU, MFU) of a run (:mod:`.utilization`)."""
