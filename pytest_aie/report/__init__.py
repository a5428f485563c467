"""Everything shown about a run: the HTML report (:mod:`.html`, with its :mod:`.sections`,
per-case :mod:`.blob` data, :mod:`.charts`, :mod:`.latency` figures and shown-text limits in
:mod:`.shown`), the terminal summary lines (:mod:`.summary`), the Markdown step summary
(:mod:`.markdown`), JUnit properties (:mod:`.junit`), the terminal drill-down of failed cases
(:mod:`.drilldown`) and the page of a run that could not start (:mod:`.not_run`).

``python -m pytest_aie.report RESULTS.jsonl [REPORT.html]`` renders a report from a log."""
