"""Shared fixtures: synthetic runs written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.synthetic_runs import write_runs


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    """A folder with ``ib/tanh``, ``ib/relu``, ``lm/grpo``, ``bad/`` (garbage bytes) and
    ``foreign/`` (a SQLite file that is not a run)."""
    return write_runs(tmp_path_factory.mktemp("runs"))
