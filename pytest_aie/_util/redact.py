"""Credential scrubbing for everything pytest-aie writes about a run (results header, report,
baselines, lock files) and for the errors a server quotes back: passwords in URLs, secret query
parameters, values of secret-looking options and ``NAME=value`` pairs, well-known API token
formats, and HTTP credentials (``Basic``/``Bearer`` followed by a token).

Only run metadata goes through here (settings, command lines, engine identities), never a
case's prompt or output, which are data and are stored as they are.

    >>> scrub_text("http://user:secret@host/v1?api_key=abc&model=m")
    'http://user:***@host/v1?api_key=***&model=m'
    >>> scrub_argv(["--aie-api-key", "sk-1", "-k", "key"])
    ['--aie-api-key', '***', '-k', 'key']
"""

from __future__ import annotations

import re
from typing import Any, Iterable

__all__ = ["MASK", "is_secret_name", "scrub", "scrub_argv", "scrub_text"]

MASK = "***"

#: Last word of an option, ini key, environment variable or query parameter that holds a secret.
_SECRET_WORDS = frozenset({
    "key", "apikey", "token", "secret", "password", "passwd", "pwd", "pass", "passphrase",
    "credential", "credentials", "auth", "authorization", "sig", "signature", "cookie",
})
# scheme://user:password@  (the password part, up to the last "@" before the path)
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):(?P<pw>[^/?#\s]*)@")
# ?name=value / &name=value / ;name=value
_QUERY = re.compile(r"(?P<head>[?&;](?P<name>[A-Za-z0-9_.\-\[\]]+)=)(?P<value>[^&#;\s]*)")
# NAME=value as a whole argument (--flag=value, ini overrides, environment assignments)
_ASSIGN = re.compile(r"^(?P<head>-{0,2}(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)=)(?P<value>.*)$", re.S)
# Well-known token formats: OpenAI, Hugging Face, GitHub, Slack.
_TOKENS = re.compile(r"\b(?P<prefix>sk-(?:proj-)?|hf_|gh[pousr]_|github_pat_|xox[abpr]-)"
                     r"[A-Za-z0-9_\-]{16,}")
# An HTTP credential quoted back: "Authorization: Basic dXNlcjpwdw==", "Bearer <token>".
# The value must look like a token (8+ characters with a digit, "+", "/" or "="), so that
# prose such as "Basic example" is left alone.
_SCHEMES = re.compile(r"\b(?P<scheme>Basic|Bearer|Token|Digest)(?P<sep>[ =:]+)"
                      r"(?P<value>(?=[A-Za-z0-9._~+/\-]*[0-9+/=])[A-Za-z0-9._~+/\-]{8,}=*)", re.I)


def is_secret_name(name: str) -> bool:
    """Whether an option/key/parameter name holds a secret: its last word is one of
    key, token, secret, password, ... (``--aie-api-key``, ``OPENAI_API_KEY``, ``access_token``;
    not ``--aie-min-pass-rate``)."""
    words = [w for w in re.split(r"[-_.\[\]\s]+", name.strip("-").lower()) if w]
    if not words:
        return False
    return words[-1] in _SECRET_WORDS or "".join(words[-2:]) in ("apikey", "accesskey")


def scrub_text(text: str) -> str:
    """``text`` with URL passwords, secret query parameters, a secret ``NAME=value`` and
    known token formats replaced by ``***``."""
    if not isinstance(text, str) or not text:
        return text
    match = _ASSIGN.match(text)
    if match and is_secret_name(match.group("name")) and match.group("value"):
        return match.group("head") + MASK
    text = _USERINFO.sub(lambda m: f"{m.group('head')}:{MASK}@" if m.group("pw") else m.group(0), text)
    text = _QUERY.sub(lambda m: m.group("head") + MASK
                      if m.group("value") and is_secret_name(m.group("name")) else m.group(0), text)
    text = _TOKENS.sub(lambda m: m.group("prefix") + MASK, text)
    return _SCHEMES.sub(lambda m: m.group("scheme") + m.group("sep") + MASK, text)


def scrub_argv(argv: Iterable[Any]) -> list[Any]:
    """A command line with secrets scrubbed: every argument through :func:`scrub_text`, and the
    argument after a secret-looking long option (``--aie-api-key VALUE``) masked."""
    out: list[Any] = []
    hide_next = False
    for arg in argv:
        if not isinstance(arg, str):
            out.append(arg)
            hide_next = False
            continue
        if hide_next and arg and not arg.startswith("-"):
            out.append(MASK)
        else:
            out.append(scrub_text(arg))
        hide_next = arg.startswith("--") and "=" not in arg and is_secret_name(arg)
    return out


def scrub(value: Any, *, key: str | None = None) -> Any:
    """``value`` (settings, a header: nested dicts, lists, strings) with secrets scrubbed; a
    non-empty string under a secret-looking key is masked whole. Tuples become lists."""
    if isinstance(value, dict):
        return {k: scrub(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        if key is not None and value and is_secret_name(key):
            return MASK
        return scrub_text(value)
    return value
