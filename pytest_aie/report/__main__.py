"""``python -m pytest_aie.report RESULTS.jsonl [REPORT.html]``."""

from pytest_aie.report.html import main

raise SystemExit(main())
