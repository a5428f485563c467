"""Settings.from_config: which options may be left empty."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_aie.errors import UsageError
from pytest_aie.settings import OPTIONS, Settings


class FakeConfig:
    """What from_config reads of a pytest.Config: command-line values, else the ini defaults."""

    rootpath = Path("/project")

    def __init__(self, **options: str) -> None:
        self.options = options

    def getoption(self, dest: str, default: Any = None) -> Any:
        return self.options.get(dest, default)

    def getini(self, name: str) -> str:
        return next(opt.default for opt in OPTIONS if opt.ini == name)


def settings(**options: str) -> Settings:
    return Settings.from_config(FakeConfig(**options))


def test_unset_thresholds_are_none_and_levels_take_their_defaults() -> None:
    s = settings()
    assert (s.min_pass_rate, s.min_score) == (None, None)
    assert (s.confidence, s.regression_margin, s.alpha) == (0.95, 0.02, 0.05)


def test_thresholds_parse() -> None:
    s = settings(aie_min_pass_rate="0.8", aie_min_score="20")
    assert (s.min_pass_rate, s.min_score) == (0.8, 20.0)


@pytest.mark.parametrize(("dest", "flag"), [("aie_confidence", "--aie-confidence"),
                                            ("aie_alpha", "--aie-alpha"),
                                            ("aie_regression_margin", "--aie-regression-margin")])
def test_empty_level_is_a_usage_error_not_none(dest: str, flag: str) -> None:
    # these have no "unset": an empty value used to become None in a float field
    with pytest.raises(UsageError, match=f"{flag} .* must be a number between 0 and 1, got ''"):
        settings(**{dest: ""})


def test_batch_size_is_zero_or_more() -> None:
    # a negative batch size used to reach the engine and fail each case with an IndexError
    assert settings(aie_batch_size="0").batch_size == 0
    assert settings(aie_batch_size="64").batch_size == 64
    with pytest.raises(UsageError, match=r"--aie-batch-size must be 0 \(the engine's choice\) or more, got -3"):
        settings(aie_batch_size="-3")
