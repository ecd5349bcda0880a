# One thread against two at the tutorial size: rnnext (set_num_threads),
# the NumPy oracle (its BLAS, through threadpoolctl) and PyTorch.
import math

import pytest

import workloads as w


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("impl", ["rnnext", "numpy", "torch"])
def test_threads(impl, threads, corpus, timed, request):
    if impl == "torch":
        request.getfixturevalue("torch")
    try:
        run = w.step_run(impl, "tutorial", threads=threads)
    except LookupError as e:
        pytest.skip(str(e))
    label = run.name.split(",")[0]
    run.name = f"{label}, {threads} thread{'s' if threads > 1 else ''}"
    timed(run, "threads tutorial")
    assert math.isfinite(run.loss), f"{run.name} loss is {run.loss}"
