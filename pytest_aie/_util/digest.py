"""A digest of a callable's code, stable across runs: what identifies a scripted engine's
function, an agent's task or tool, or a retriever's search in the cache and the results log."""

from __future__ import annotations

import hashlib
import types
from typing import Any, Callable

__all__ = ["code_digest"]


def code_digest(fn: Callable[..., Any]) -> str:
    """A digest of a callable's code that is stable across runs: its bytecode, the names it
    uses and its constants, nested functions included (closure values are not seen)."""
    # the __code__ of a callable object's __call__ method, not a callability test
    code = getattr(fn, "__code__", None) or getattr(getattr(fn, "__call__", None), "__code__", None)  # noqa: B004
    if code is None:
        return ""
    digest = hashlib.sha256()
    stack = [code]
    while stack:
        c = stack.pop()
        digest.update(c.co_code)
        digest.update(repr(c.co_names).encode())
        for const in c.co_consts:
            if isinstance(const, types.CodeType):
                stack.append(const)
            elif isinstance(const, frozenset):  # its repr's order varies between runs
                digest.update(repr(sorted(map(repr, const))).encode())
            else:
                digest.update(repr(const).encode())
    return digest.hexdigest()
