"""pytest-aie: evaluation-first testing for applications built on foundation models."""

from __future__ import annotations

__version__ = "0.1.0"
