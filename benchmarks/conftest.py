# Fixtures for the benchmarks: skips when tiny Shakespeare or PyTorch is
# absent, a `timed` fixture that files each benchmark under its group, and a
# closing table of tokens per second per group with ratios to the first row.
# Under --benchmark-disable every workload runs once (after its check), so
# the benchmarks are quick tests; no timing is ever asserted.
from __future__ import annotations

from typing import Any

import pytest

import workloads as w

_RESULTS = pytest.StashKey[list[tuple[str, str, int, float]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RESULTS] = []


def pytest_report_header(config: pytest.Config) -> list[str]:
    return w.machine_report()


@pytest.fixture(scope="session")
def corpus() -> tuple[Any, int]:
    try:
        return w.corpus_ids()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def torch() -> Any:
    torch = w.torch_or_none()
    if torch is None:
        pytest.skip("PyTorch is not installed: pip install torch==2.13.0")
    return torch


@pytest.fixture
def quick(request: pytest.FixtureRequest) -> bool:
    """True under --benchmark-disable: run each workload once, small."""
    return bool(request.config.getoption("benchmark_disable"))


@pytest.fixture
def timed(benchmark: Any, request: pytest.FixtureRequest):
    """timed(workload, group, once=False): benchmark a checked workload.

    A workload has .name, .tokens (per call) and is called with no
    arguments. once=True times a single call, for jobs that take seconds.
    """

    def run(workload: Any, group: str, *, once: bool = False) -> Any:
        benchmark.group = group
        benchmark.extra_info["tokens_per_call"] = workload.tokens
        if once:
            result = benchmark.pedantic(workload, rounds=1, iterations=1)
        else:
            result = benchmark(workload)
        if benchmark.stats is not None:
            median = benchmark.stats.stats.median
            row = (group, workload.name, workload.tokens, median)
            request.config.stash[_RESULTS].append(row)
        return result

    return run


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rows = config.stash[_RESULTS]
    if not rows:
        return
    tr = terminalreporter
    tr.section("tokens per second, from each benchmark's median round")
    groups: dict[str, list[tuple[str, int, float]]] = {}
    for group, name, tokens, median in rows:
        groups.setdefault(group, []).append((name, tokens, median))
    for group, entries in groups.items():
        entries.sort(key=lambda e: not e[0].startswith("rnnext"))
        first, tokens, median = entries[0]
        tr.write_line(f"{group}  (last column: this rate / {first}'s)")
        for name, tokens, median in entries:
            rate = tokens / median
            tr.write_line(
                f"  {name:<28} {rate:>14,.0f} /s  {median * 1e3:>10.3f} ms/call"
                f"  {rate * entries[0][2] / entries[0][1]:>7.3f}"
            )
