"""What a run writes: the case record type and the results log's format version
(:mod:`.records`), checks of a record read back (:mod:`.check`) and the results log itself,
written and read in one place (:mod:`.log`)."""
