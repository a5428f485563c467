"""The results log: one JSONL file per run, a header line first, then one line per scored case,
flushed as each case completes, so a crash loses nothing that finished.

Only one process writes it (the xdist controller, or the only process); workers send their
case records to it attached to their test reports.

* **Any text is stored.** Lone surrogates (``"\\ud800"``, which a model server's JSON can
  carry) are written as JSON escapes, so every line is valid UTF-8 and reads back exactly.
* **Bounded lines.** A field longer than :data:`MAX_FIELD_CHARS` characters (as JSON) is cut
  in the log, with a note in the text and its original length under the record's ``"cut"``;
  the in-memory record (gates, report) keeps the whole value.
* **Previous logs are kept.** The first record of a run moves ``results.jsonl`` to
  ``results.1.jsonl`` (and ``.1`` to ``.2`` ..., :data:`KEEP_LOGS` generations).
* **One writer.** :meth:`ResultsLog.claim` takes a file lock on ``results.jsonl.lock``
  (:mod:`pytest_aie._util.files`) before anything is generated and names itself in
  ``results.jsonl.holder``; a second run writing the same log stops with one line naming the
  run that holds it. Both files are removed when the run ends; a lock file left by a killed run
  does not block the next one (the operating system released its lock).
* **No secrets.** :func:`run_header` scrubs credentials from the settings and the command line.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import re
import socket
import subprocess
import warnings
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from pytest_aie._util.files import HeldLock, try_lock, write_atomic
from pytest_aie._util.redact import scrub, scrub_argv
from pytest_aie._version import __version__
from pytest_aie.errors import UsageError
from pytest_aie.results.check import case_problem, other_problem, uncut
from pytest_aie.results.records import FORMAT_VERSION, ResultsError, ResultsWarning

__all__ = ["FORMAT_VERSION", "KEEP_LOGS", "MAX_FIELD_CHARS", "ResultsLog", "check_output_paths",
           "check_writable", "claim_outputs", "dumps", "load_results", "reference_fields", "run_header"]

#: Earlier logs kept next to the current one: results.1.jsonl (the previous run) ... results.3.jsonl.
KEEP_LOGS = 3
#: Longest field (its JSON text, in characters) written to the log; longer ones are cut.
MAX_FIELD_CHARS = 200_000
_VERSIONED = ("pytest", "torch", "transformers", "openai", "vllm", "sentence-transformers",
              "pytest-xdist")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_commit(cwd: str | Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_header(*, settings: dict[str, Any], rootdir: str | Path, argv: list[str]) -> dict[str, Any]:
    """Run metadata: versions, engine, model, git commit, seed, start time (credentials
    scrubbed from the settings, the model name and the command line)."""

    return {
        "type": "run",
        "format_version": FORMAT_VERSION,
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "pytest_aie": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "engine": scrub({"engine": settings.get("engine"), "model": settings.get("model") or "embedded"}),
        "seed": settings.get("seed"),
        "git_commit": git_commit(rootdir),
        "argv": scrub_argv(argv),
        "versions": {d: v for d in _VERSIONED if (v := _version(d))},
        "settings": scrub({k: v for k, v in settings.items() if k not in ("cache_dir",)}),
    }


def dumps(value: Any) -> str:
    """One JSON line that can always be written as UTF-8: lone surrogates become ``\\udXXX``
    escapes (``json.loads`` gives them back), everything else stays readable."""
    return _escape_surrogates(json.dumps(value, default=str, ensure_ascii=False))


def _escape_surrogates(text: str) -> str:
    if text.isascii():  # the common case: no scan per character
        return text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _line(record: dict[str, Any]) -> str:
    """``dumps(_bounded(record))``, serialising the record once: no field's JSON text can be
    longer than the whole record's, so a record whose text is within :data:`MAX_FIELD_CHARS`
    has nothing to cut (the common case; the per-field check is one ``json.dumps`` per
    structure)."""
    text = json.dumps(record, default=str, ensure_ascii=False)
    if len(text) > MAX_FIELD_CHARS:
        text = json.dumps(_bounded(record), default=str, ensure_ascii=False)
    return _escape_surrogates(text)


def _bounded(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with every field whose JSON text exceeds :data:`MAX_FIELD_CHARS` cut: a long
    string keeps its head, a long structure becomes the head of its JSON text; ``"cut"`` maps
    each cut field to its original length."""
    cut: dict[str, int] = {}
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, str):
            if len(value) > MAX_FIELD_CHARS:
                cut[key] = len(value)
                value = _cut(value)
        elif isinstance(value, (dict, list, tuple)):
            text = json.dumps(value, default=str, ensure_ascii=False)
            if len(text) > MAX_FIELD_CHARS:
                cut[key] = len(text)
                value = _cut(text)
        out[key] = value
    if cut:
        out["cut"] = cut
    return out


def _cut(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """``text`` cut to its first ``limit`` characters, with a note of how many more there were
    (also used for the outputs a baseline keeps)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [results log cut {len(text) - limit:,} more characters]"


def reference_fields(scorer: Any, case: Any) -> dict[str, Any]:
    """What a record says about the reference its scorer compared against, when that is not
    the case's ``expected`` field: ``{"reference_field": NAME, "reference": VALUE}``, else ``{}``.

    A scorer may say which field it reads (``reference_field``: a name, or a function of the
    case); otherwise ``exact(field=...)`` and ``similarity(references=...)`` are understood, with
    a reference scorer's default (``references`` when the case has it, else ``expected``)."""
    named = getattr(scorer, "reference_field", None)
    if callable(named):
        field = named(case)
    elif isinstance(named, str):
        field = named
    elif isinstance(getattr(scorer, "field", None), str):
        field = scorer.field
    elif hasattr(scorer, "references"):
        field = scorer.references or ("references" if case.get("references") is not None
                                      else "expected")
    else:
        field = "expected"
    if not field or field == "expected":
        return {}
    return {"reference_field": field, "reference": case.get(field)}


# --------------------------------------------------------------------------- output paths


def check_writable(path: str | os.PathLike[str], what: str, option: str, *,
                   folder: bool = False) -> None:
    """Raise :class:`UsageError` (one line: the path, why, the option to change) unless
    ``path`` can be written: a file (or with ``folder``, a folder) that is writable if it
    exists, or else can be created in its nearest existing parent. Leaves nothing behind (a
    probe folder is made and removed where permissions alone cannot tell, e.g. as root)."""
    path = Path(path).absolute()
    fix = f"pass {option} with a path this run can write"

    def fail(why: str) -> UsageError:
        return UsageError(f"{what} {path} cannot be written: {why}", fix=fix)

    if path.exists():
        if path.is_dir() != folder:
            raise fail(f"{path} is a {'folder' if path.is_dir() else 'file'}, "
                       f"not a {'folder' if folder else 'file'}")
        if not os.access(path, os.W_OK | (os.X_OK if folder else 0)):
            raise fail(f"{path} is not writable")
        if not folder:
            _check_folder(path.parent, fail)
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    _check_folder(parent, fail)


def _check_folder(folder: Path, fail: Any) -> None:
    if not folder.is_dir():
        raise fail(f"{folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise fail(f"folder {folder} is not writable")
    try:  # what os.access cannot tell (root, /proc, a read-only mount): make a folder there
        import tempfile

        os.rmdir(tempfile.mkdtemp(prefix=".aie-probe-", dir=folder))
    except OSError as exc:
        raise fail(f"folder {folder} does not take new files ({exc.strerror or exc})") from None


def claim_outputs(log: ResultsLog | None, *, report: str = "", cache_dir: str = "") -> None:
    """Before any generation: check that the results log, the report and the cache folder
    (empty: not written) can be written, then :meth:`ResultsLog.claim` the log. Raises
    :class:`UsageError` with one line."""
    check_output_paths(results=str(log.path) if log is not None else "", report=report,
                       cache_dir=cache_dir)
    if log is not None:
        log.claim()


def check_output_paths(*, results: str = "", report: str = "", cache_dir: str = "") -> None:
    """Check every output of a run before any work: the results log, the HTML report and the
    generation cache folder (empty: not written). Raises :class:`UsageError`."""
    if results:
        check_writable(results, "results log", "--aie-results")
    if report:
        check_writable(report, "report", "--aie-report")
    if cache_dir:
        check_writable(cache_dir, "cache folder", "--aie-cache-dir", folder=True)
        check_writable(Path(cache_dir) / "generations.sqlite", "cache folder", "--aie-cache-dir")


# --------------------------------------------------------------------------- the log


class ResultsLog:
    """Appends records to a JSONL file, one flushed line each."""

    def __init__(self, path: str | Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        self.header = header
        self.records: list[dict[str, Any]] = []
        self._fh: IO[str] | None = None
        self._lock: HeldLock | None = None
        self._unlocked = False
        self._made_folder = False
        self._closed = False

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @property
    def holder_path(self) -> Path:
        """Names the run holding the lock (the lock file itself is truncated by a contender)."""
        return self.path.with_name(self.path.name + ".holder")

    def claim(self) -> None:
        """Become the only writer of this log: lock ``<log>.lock`` (creating the folder if
        needed) and record who holds it in ``<log>.holder``. Raises :class:`UsageError` naming
        the run that holds it. Call it before any work; :meth:`close` releases it."""
        if self._lock is not None or self._unlocked:
            return
        folder = self.path.parent
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            self._made_folder = True
        try:
            lock = try_lock(self.lock_path)
        except (OSError, NotImplementedError):  # a file system without locks (some network
            self._unlocked = True               # mounts): go on unlocked
            return
        if lock is None:
            try:
                holder = self.holder_path.read_text(encoding="utf-8").strip()
            except OSError:
                holder = ""
            self._release_folder()
            raise UsageError(
                f"results log {self.path} is in use by another pytest-aie run "
                f"({_describe_holder(holder)})",
                fix="wait for that run to finish, or give this run its own "
                    "--aie-results PATH (and --aie-report PATH)")
        self._lock = lock
        write_atomic(self.holder_path, dumps({
            "pid": os.getpid(), "host": socket.gethostname(),
            "started_at": self.header.get("started_at"),
            "argv": scrub_argv(self.header.get("argv") or [])}) + "\n")

    def _release_folder(self) -> None:
        if self._made_folder:
            try:
                self.path.parent.rmdir()  # only if still empty
            except OSError:
                pass
            self._made_folder = False

    def _rotate(self) -> None:
        if not self.path.exists():
            return
        stem, suffix = self.path.stem, self.path.suffix
        older = [self.path.with_name(f"{stem}.{i}{suffix}") for i in range(1, KEEP_LOGS + 1)]
        for src, dst in zip(reversed(older[:-1]), reversed(older[1:])):
            if src.exists():
                os.replace(src, dst)
        os.replace(self.path, older[0])

    def _write(self, record: dict[str, Any]) -> None:
        if self._fh is None:  # opened on the first record: runs without evals write nothing
            self.claim()  # the plugin claims before generating; this covers other callers
            self._made_folder = False  # it holds a log now
            self._rotate()
            self._fh = self.path.open("w", encoding="utf-8")
            self._fh.write(_line(self.header) + "\n")
        self._fh.write(_line(record) + "\n")
        self._fh.flush()

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if not self._closed:
            self._write(record)

    def close(self) -> None:
        self._closed = True
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
        if self._lock is not None:
            with contextlib.suppress(FileNotFoundError):
                self.holder_path.unlink()
            self._lock.release()  # removes the lock file while still holding it
            self._lock = None
            self._release_folder()


def _describe_holder(text: str) -> str:
    try:
        info = json.loads(text.splitlines()[0])
    except (ValueError, IndexError):
        return "its lock file names no run"
    parts = [f"pid {info.get('pid')}"]
    if info.get("host") and info.get("host") != socket.gethostname():
        parts[0] += f" on {info['host']}"
    if info.get("started_at"):
        parts.append(f"started {info['started_at']}")
    argv = info.get("argv")
    if isinstance(argv, list) and argv:
        import shlex

        command = shlex.join(str(a) for a in argv)
        parts.append(f"`{command if len(command) <= 200 else command[:200] + '…'}`")
    return ", ".join(parts)


def load_results(jsonl_path: str | os.PathLike[str], *, other: list[dict[str, Any]] | None = None
                 ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a results log: ``(header, cases)`` (``other``: a list that receives the records of
    other types, e.g. the run's ``change`` and ``conclusion`` records).

    A line that is not valid JSON is skipped with a :class:`ResultsWarning` and the records
    around it are kept: a truncated last line is what a crash mid-write leaves. Records of
    other types than ``run`` and ``case`` are ignored (forward compatibility).

    Raises :class:`ResultsError` if the file is missing or has no run header.
    """
    path = Path(jsonl_path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ResultsError(f"results log {path} not found",
                           fix="run pytest with pytest-aie first, or pass the right path") from None
    header: dict[str, Any] | None = None
    cases: list[dict[str, Any]] = []
    lines = data.split(b"\n")
    last = len(lines)
    while last > 0 and not lines[last - 1].strip():
        last -= 1
    for no, raw in enumerate(lines[:last], start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = "truncated last line (the run probably stopped mid-write)" if no == last \
                else f"damaged line ({exc})"
            warnings.warn(f"{path}:{no}: skipped a {where}", ResultsWarning, stacklevel=2)
            continue
        if not isinstance(record, dict):
            warnings.warn(f"{path}:{no}: skipped a line that is not a JSON object",
                          ResultsWarning, stacklevel=2)
            continue
        kind = record.get("type")
        if kind == "case":
            _read_case(record, path, no)
            cases.append(record)
        elif kind != "run":
            _check_other(record, path, no)
            if other is not None:
                other.append(record)
        elif kind == "run":
            if header is None:
                header = record
            else:
                warnings.warn(f"{path}:{no}: skipped a second run header; one log holds one run",
                              ResultsWarning, stacklevel=2)
    if header is None:
        raise ResultsError(f"results log {path} has no run header (a first line with "
                           f'"type": "run")', fix="pass a results log written by pytest-aie")
    version = header.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        warnings.warn(f"{path}: results format version {version} is newer than this pytest-aie "
                      f"reads ({FORMAT_VERSION}); some fields may be missing from the report",
                      ResultsWarning, stacklevel=2)
    return header, cases

def _read_case(record: dict[str, Any], path: Path, no: int) -> None:
    """A case record as the readers need it: a structured field the log cut to text becomes
    ``None`` (with a :class:`ResultsWarning`); a record of the wrong shape raises
    :class:`ResultsError` naming the file and line (no reader gets it)."""
    for name in uncut(record):
        warnings.warn(f"{path}:{no}: case {record.get('case_id')}: its {name} was cut in the "
                      f"results log ({record['cut'][name]:,} characters as JSON) and is not shown",
                      ResultsWarning, stacklevel=3)
    problem = case_problem(record)
    if problem is not None:
        raise ResultsError(f"{path}:{no}: malformed case record: {problem}",
                           fix="restore the log from the run's artifacts, or delete that line "
                               "(its case is then left out)")


def _check_other(record: dict[str, Any], path: Path, no: int) -> None:
    problem = other_problem(record)
    if problem is not None:
        raise ResultsError(f"{path}:{no}: malformed {record.get('type')} record: {problem}",
                           fix="restore the log from the run's artifacts, or delete that line "
                               "(the report is then recomputed from the case records)")
