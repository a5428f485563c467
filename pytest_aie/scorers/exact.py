"""Exact evals: exact match, contains / any-of, regex, JSON, JSON Schema, numeric.

Used through the ``exact`` marker::

    @pytest.mark.exact("match", normalize="all")           # the default kind is "match"
    @pytest.mark.exact("contains", normalize=["case"])     # "any_of" is another name for it
    @pytest.mark.exact("contains_all")                     # every string of a list is in it
    @pytest.mark.exact("regex", pattern=r"^\\d{4}-\\d{2}-\\d{2}$")
    @pytest.mark.exact("json")                             # output parses as JSON
    @pytest.mark.exact("json_schema", schema="person.schema.json")
    @pytest.mark.exact("numeric", tolerance=0.01)          # last number in the output

Every score is 1.0 (pass) or 0.0 (fail) with the reason. A case the check cannot measure is
unmeasured with the reason: its expected value is missing, empty (after normalisation), not a
number, or not a valid regular expression, or a regular expression ran past ``regex_timeout``
seconds (default 1 s per match; patterns run on the ``regex`` module, which can stop a match).

A list in a case's expected field means one thing for every kind that compares text or numbers
(``match``, ``contains``, ``any_of``, ``numeric``): alternatives, any one of them counts. The one
kind that needs all of them says so in its name: ``contains_all``. (For ``json`` a list is the
JSON value itself.)
"""

from __future__ import annotations

import json
import math
import re
import string
import unicodedata
from pathlib import Path
from typing import Any, Callable, Iterable

import regex

from pytest_aie.dataset import Case
from pytest_aie.errors import UsageError
from pytest_aie.scorers.base import Score, Scorer

__all__ = ["ALTERNATIVES", "KINDS", "NORMALIZERS", "REGEX_TIMEOUT", "ExactScorer", "normalize", "extract_number"]

KINDS = ("match", "contains", "any_of", "contains_all", "regex", "json", "json_schema", "numeric")
#: The kinds that read a list in the expected field as alternatives (any one counts).
ALTERNATIVES = ("match", "contains", "any_of", "numeric")
NORMALIZERS = ("case", "whitespace", "punctuation", "articles")
#: Seconds one regular-expression match may take before its case is unmeasured.
REGEX_TIMEOUT = 1.0

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.IGNORECASE)
_PUNCT = str.maketrans("", "", string.punctuation)
# A sign counts only when it does not follow a letter or digit: "5-10" and "2024-01-05" are a
# range and a date, not negative numbers.
_SIGN = r"(?:(?<!\w)[-+])?"
_NUMBER = re.compile(_SIGN + r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|"
                     + _SIGN + r"\.\d+")
_FENCE_LANGUAGE = re.compile(r"[A-Za-z0-9_-]*")


def _normalizers(value: str | Iterable[str] | bool | None) -> tuple[str, ...]:
    if value in (None, False, (), []):
        return ()
    if value is True or value == "all":
        return NORMALIZERS
    names = (value,) if isinstance(value, str) else tuple(value)  # type: ignore[arg-type]
    bad = [n for n in names if n not in NORMALIZERS]
    if bad:
        raise UsageError(f"unknown normalisation {bad[0]!r} in @pytest.mark.exact",
                         fix=f"use normalize= with any of {', '.join(NORMALIZERS)}, or 'all'")
    return tuple(n for n in NORMALIZERS if n in names)  # canonical order


def normalize(text: str, options: Iterable[str] = NORMALIZERS) -> str:
    """Normalise text for comparison. Options apply in a fixed order, so the result is
    idempotent: ``normalize(normalize(t)) == normalize(t)``."""
    opts = set(options)
    if "case" in opts:
        text = text.casefold()
    if "punctuation" in opts:
        text = text.translate(_PUNCT)  # ASCII punctuation and symbols, as string.punctuation
        if not text.isascii():  # and punctuation of every script: “ ” « » ¿ 。 — …
            text = "".join(c for c in text if not unicodedata.category(c).startswith("P"))
    if "articles" in opts:
        text = _ARTICLES.sub(" ", text)
    if "whitespace" in opts or "articles" in opts or "punctuation" in opts:
        text = " ".join(text.split())
    return text


def extract_number(text: str) -> float | None:
    """The last number in ``text`` (thousands separators allowed), or None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:  # pragma: no cover - the pattern only matches numbers
        return None


class _RegexTimeout(Exception):
    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        self.pattern = pattern


def _strip_fence(text: str) -> str:
    """The body of a Markdown code fence around the whole text (```json ... ```), else the
    text. String operations, not a regex: linear even in a long run of whitespace."""
    inner = text.strip()
    first_line_end = inner.find("\n")
    if not (inner.startswith("```") and inner.endswith("```")) or first_line_end < 0 \
            or len(inner) < 6 or not _FENCE_LANGUAGE.fullmatch(inner[3:first_line_end].strip()):
        return text
    return inner[first_line_end + 1:-3]


class ExactScorer(Scorer):
    """One exact check, configured from the ``exact`` marker's arguments."""

    marker = "exact"

    def __init__(self, kind: str = "match", *, normalize: Any = None, field: str = "expected",
                 pattern: str | None = None, flags: str = "", schema: Any = None,
                 tolerance: float = 1e-6, rel_tolerance: float = 0.0,
                 extract: str | None = None, regex_timeout: float = REGEX_TIMEOUT,
                 base_dir: str | Path | None = None) -> None:
        if kind not in KINDS:
            raise UsageError(f"unknown exact eval kind {kind!r}",
                             fix=f"use @pytest.mark.exact with one of {', '.join(KINDS)}")
        self.kind = kind
        self.norm = _normalizers(normalize)
        self.field = field
        self.flags = (regex.IGNORECASE if "i" in flags else 0) \
            | (regex.MULTILINE if "m" in flags else 0) | (regex.DOTALL if "s" in flags else 0)
        if isinstance(regex_timeout, bool) or not isinstance(regex_timeout, (int, float)) \
                or not 0 < regex_timeout < math.inf:
            raise UsageError(f"regex_timeout={regex_timeout!r} in @pytest.mark.exact is not a "
                             "positive number of seconds", fix="pass e.g. regex_timeout=1.0")
        self.regex_timeout = float(regex_timeout)
        self.pattern = self._compile(pattern) if pattern is not None else None
        self.extract = self._compile(extract) if extract is not None else None
        if kind == "regex" and pattern is None:
            self.pattern = None  # taken from each case's expected field
        self.tolerance = float(tolerance)
        self.rel_tolerance = float(rel_tolerance)
        self.schema = self._load_schema(schema, base_dir) if kind == "json_schema" else None
        if kind == "json_schema" and self.schema is None:
            raise UsageError("@pytest.mark.exact('json_schema') needs a schema",
                             fix="pass schema= a dict or a .json file next to the test file")

    @property
    def metric(self) -> str:
        return f"exact.{self.kind}"

    @property
    def needs_expected(self) -> bool:
        return not (self.kind in ("json", "json_schema") or (self.kind == "regex" and self.pattern))

    def required_fields(self) -> tuple[str, ...]:
        return (self.field,) if self.needs_expected else ()

    def _compile(self, pattern: str) -> Any:
        """A marker's pattern: checked when the suite is built (a usage error)."""
        try:
            return regex.compile(pattern, self.flags)
        except regex.error as exc:
            raise UsageError(f"invalid regular expression {pattern!r}: {exc}",
                             fix="fix the pattern given to @pytest.mark.exact") from None

    def _search(self, pattern: Any, text: str) -> Any:
        try:
            return pattern.search(text, timeout=self.regex_timeout)
        except TimeoutError:
            raise _RegexTimeout(pattern.pattern) from None

    @staticmethod
    def _load_schema(schema: Any, base_dir: str | Path | None) -> dict[str, Any] | None:
        if schema is None or isinstance(schema, dict):
            return schema
        import jsonschema

        path = Path(base_dir or ".") / str(schema)
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"JSON schema file {str(path)!r} not found",
                             fix="give schema= a dict, or a path relative to the test file") from None
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{exc.lineno}: invalid JSON in schema ({exc.msg})",
                             fix="fix the schema file") from None
        try:
            jsonschema.validators.validator_for(loaded).check_schema(loaded)
        except jsonschema.SchemaError as exc:
            raise UsageError(f"{path}: not a valid JSON Schema ({exc.message})",
                             fix="fix the schema file") from None
        return loaded  # type: ignore[no-any-return]

    def _result(self, ok: bool, reason: str, **details: Any) -> Score:
        return Score(self.metric, 1.0 if ok else 0.0, ok, reason, details)

    def score(self, output: str, case: Case) -> Score:
        if not isinstance(output, str):
            return Score.unmeasured(self.metric, f"output is {type(output).__name__}, not text")
        try:
            return self._score(output, case)
        except _RegexTimeout as exc:
            return Score.unmeasured(self.metric, f"regex timed out after {self.regex_timeout:g}s: "
                                    f"{exc.pattern[:200]!r} on the output (nested repetition "
                                    "backtracks exponentially; simplify the pattern or raise "
                                    "regex_timeout)")

    def _score(self, output: str, case: Case) -> Score:
        text = output
        if self.extract is not None:
            m = self._search(self.extract, text)
            if m is None:
                return self._result(False, f"extract pattern {self.extract.pattern!r} found "
                                    "nothing in the output")
            found = m.group(1) if m.groups() else m.group(0)
            if found is None:  # the group did not take part in the match
                return self._result(False, f"extract pattern {self.extract.pattern!r} matched "
                                    "but its group captured nothing")
            text = found
        expected = case.fields.get(self.field)
        if self.needs_expected and expected is None:
            return Score.unmeasured(self.metric, f"case has no {self.field!r} field")
        if self.kind in ("match", "contains", "any_of", "contains_all"):
            return self._textual(text, expected)
        check: Callable[[str, Any], Score] = getattr(self, f"_{self.kind}")
        return check(text, expected)

    def _norm(self, value: Any) -> str:
        return normalize(str(value), self.norm)

    def _textual(self, text: str, expected: Any) -> Score:
        """match / contains / any_of / contains_all. An expected string with nothing left to look
        for (empty, or only punctuation and articles under normalisation) would be found in every
        output: such an alternative is skipped, and a case left with none is unmeasured; for
        contains_all, which needs every string, one such string makes the case unmeasured."""
        values = expected if isinstance(expected, list) else [expected]
        if not values:
            return Score.unmeasured(self.metric, f"case's {self.field!r} is an empty list")
        usable: list[tuple[Any, str]] = []  # (value, its normal form)
        empty: list[Any] = []
        for value in values:
            norm = self._norm(value)
            # for match, "" == "" is a comparison; for contains and any_of, "" is in any text
            if norm or (self.kind == "match" and str(value) == ""):
                usable.append((value, norm))
            else:
                empty.append(value)
        if not usable or (self.kind == "contains_all" and empty):
            return Score.unmeasured(self.metric, f"expected {empty[0]!r} is empty" + (
                f" after normalisation ({', '.join(self.norm)})" if str(empty[0]) else "")
                + ": it would be found in any output")
        compare: Callable[[str, str, list[tuple[Any, str]], Any], Score] = getattr(
            self, "_any_of" if self.kind == "contains" else f"_{self.kind}")
        return compare(self._norm(text), text, usable, expected)

    def _match(self, got: str, text: str, usable: list[tuple[Any, str]], expected: Any) -> Score:
        for option, norm in usable:
            if got == norm:
                return self._result(True, f"output matches {option!r}")
        return self._result(False, f"expected {expected!r}, got {text.strip()[:200]!r}")

    def _contains_all(self, got: str, text: str, usable: list[tuple[Any, str]],
                      expected: Any) -> Score:
        missing = [n for n, norm in usable if norm not in got]
        if missing:
            return self._result(False, f"output does not contain {missing[0]!r}")
        return self._result(True, f"output contains {usable[0][0]!r}" if len(usable) == 1
                            else f"output contains all {len(usable)} expected strings")

    def _any_of(self, got: str, text: str, usable: list[tuple[Any, str]], expected: Any) -> Score:
        """contains and any_of: one alternative in the output suffices."""
        for option, norm in usable:
            if norm in got:
                return self._result(True, f"output contains {option!r}")
        if len(usable) == 1:
            return self._result(False, f"output does not contain {usable[0][0]!r}")
        return self._result(False, f"output contains none of {[o for o, _ in usable]!r}")

    def _regex(self, text: str, expected: Any) -> Score:
        pattern = self.pattern
        if pattern is None:
            try:
                pattern = regex.compile(str(expected), self.flags)
            except regex.error as exc:
                return Score.unmeasured(self.metric, f"case's {self.field!r} is an invalid "
                                        f"regular expression {str(expected)[:200]!r}: {exc}")
        m = self._search(pattern, text)
        if m:
            return self._result(True, f"pattern {pattern.pattern!r} matched {m.group(0)[:80]!r}")
        return self._result(False, f"pattern {pattern.pattern!r} did not match")

    def _parse_json(self, text: str) -> tuple[Any, str | None]:
        try:
            return json.loads(_strip_fence(text)), None
        except json.JSONDecodeError as exc:
            return None, f"output is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"

    def _json(self, text: str, expected: Any) -> Score:
        value, error = self._parse_json(text)
        if error:
            return self._result(False, error)
        if expected is not None and isinstance(expected, (dict, list)) and value != expected:
            return self._result(False, "JSON differs from expected", parsed=value)
        return self._result(True, "output is valid JSON")

    def _json_schema(self, text: str, expected: Any) -> Score:
        import jsonschema

        value, error = self._parse_json(text)
        if error:
            return self._result(False, error)
        assert self.schema is not None  # __init__ refuses json_schema without a schema
        validator = jsonschema.validators.validator_for(self.schema)(self.schema)
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].path) or "(root)"
            return self._result(False, f"schema violation at {where}: {errors[0].message}")
        return self._result(True, "output is valid JSON and matches the schema")

    def _numeric(self, text: str, expected: Any) -> Score:
        """The last number in the output against the expected number, or any of a list."""
        got = extract_number(text)
        if got is None:
            return self._result(False, "no number in the output")
        values = expected if isinstance(expected, list) else [expected]
        if not values:
            return Score.unmeasured(self.metric, f"case's {self.field!r} is an empty list")
        wants: list[float] = []
        for value in values:
            try:
                wants.append(float(str(value).replace(",", "")))
            except ValueError:
                return Score.unmeasured(self.metric, f"expected value {value!r} is not a number")
        for want in wants:
            if math.isclose(got, want, rel_tol=self.rel_tolerance, abs_tol=self.tolerance):
                return self._result(True, f"{got:g} is within tolerance of {want:g}", got=got)
        shown = f"{wants[0]:g}" if len(wants) == 1 else "one of " + ", ".join(f"{w:g}" for w in wants)
        return self._result(False, f"expected {shown}, got {got:g}", got=got)
