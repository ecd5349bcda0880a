# compare.py's arithmetic on made-up times: no workload is run.
from __future__ import annotations

from types import SimpleNamespace

import pytest

import compare


def workload(tokens: int) -> SimpleNamespace:
    return SimpleNamespace(tokens=tokens)


def test_paired_ratio_is_the_median_of_each_rounds_ratio():
    fast, slow = workload(100), workload(50)
    # per token: fast 1, 2, 1 (a slow second round); slow 10, 20, 12
    times = {id(fast): [100.0, 200.0, 100.0], id(slow): [500.0, 1000.0, 600.0]}
    assert compare.paired(fast, slow, times) == pytest.approx(10.0)


def test_a_slow_round_cancels_out_of_the_paired_ratio():
    # the host slows both workloads of a round by the same factor, a
    # different one in every round: each round's ratio is still 3
    fast, slow = workload(1), workload(1)
    factors = [1.0, 2.5, 1.0, 7.0, 1.3]
    times = {id(fast): factors, id(slow): [3.0 * f for f in factors]}
    assert compare.paired(fast, slow, times) == pytest.approx(3.0)
