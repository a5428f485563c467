"""Deciding the run: the gate policy and the family-wise adjustment (:mod:`.policy`), suite
thresholds (:mod:`.thresholds`), paired comparisons (:mod:`.comparisons`), stored baselines
(:mod:`.baseline`) and the cases whose status changed against one (:mod:`.changes`), and the
run's conclusion and exit status (:mod:`.conclusion`)."""
