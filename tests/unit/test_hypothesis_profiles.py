"""The hypothesis profiles of tests/conftest.py: CI draws the same examples every run."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


def test_ci_profile_is_the_default_and_derandomised():
    if os.environ.get("HYPOTHESIS_PROFILE", "ci") != "ci":
        pytest.skip("another hypothesis profile was selected")
    active = settings()
    assert active.derandomize is True and active.database is None and active.deadline is None
    assert settings.get_profile("ci").derandomize is True


def test_dev_profile_draws_random_examples():
    assert settings.get_profile("dev").derandomize is False


def test_ci_draws_the_same_examples_twice():
    if not settings().derandomize:
        pytest.skip("only the derandomised profile repeats its examples")

    def collect() -> list[int]:
        seen: list[int] = []

        @settings(max_examples=20)
        @given(st.integers())
        def probe(x):
            seen.append(x)

        probe()
        return seen

    first, second = collect(), collect()
    assert first == second and len(set(first)) > 1
