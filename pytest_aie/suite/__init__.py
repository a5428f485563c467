"""What a test declares: a suite's specification from its markers (:mod:`.spec`), the table
of eval markers (:mod:`.markers`) and targets, your own application standing in for the model
(:mod:`.target`).

``from pytest_aie.suite import register_eval_marker`` (or ``from pytest_aie import
register_eval_marker``) registers an eval marker of a user's plugin; it is loaded on use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_aie.suite.markers import register_eval_marker

__all__ = ["register_eval_marker"]


def __getattr__(name: str) -> Any:
    if name == "register_eval_marker":
        from pytest_aie.suite.markers import register_eval_marker

        return register_eval_marker
    raise AttributeError(f"module 'pytest_aie.suite' has no attribute {name!r}")
