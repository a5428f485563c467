"""``python -m pytest_aie COMMAND``: ``report RESULTS... [-o report.html] [--baseline NAME]
[--summary]`` rebuilds the report from results logs (:mod:`pytest_aie.rebuild`)."""

from __future__ import annotations

import sys
from typing import Sequence

USAGE = "usage: python -m pytest_aie report RESULTS... [-o REPORT.html] [--baseline NAME] [--summary]"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "report":
        print(USAGE, file=sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    from pytest_aie.rebuild import main as report

    return report(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
