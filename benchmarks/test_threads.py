# rnnext's step on one thread against two, at the tutorial size.
import math

import pytest

import workloads as w


@pytest.mark.parametrize("threads", [1, 2])
def test_threads(threads, corpus, timed):
    run = w.step_run("rnnext", "tutorial", threads=threads)
    run.name = f"rnnext, {threads} thread{'s' if threads > 1 else ''}"
    timed(run, "threads tutorial")
    assert math.isfinite(run.loss), f"{run.name} loss is {run.loss}"
