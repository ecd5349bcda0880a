# One fused Adagrad step of rnnext against the NumPy oracle and PyTorch on
# real consecutive feeds, one group per configuration. Each is checked
# against the float64 oracle before it is timed.
import math

import pytest

import workloads as w


@pytest.mark.parametrize("config", list(w.CONFIGS))
@pytest.mark.parametrize("impl", ["rnnext", "numpy", "torch"])
def test_step(config, impl, corpus, timed, request):
    if impl == "torch":
        request.getfixturevalue("torch")
    run = w.step_run(impl, config)
    H, B, T = w.CONFIGS[config]
    timed(run, f"step {config}: H={H} B={B} T={T}")
    assert math.isfinite(run.loss), f"{run.name} loss is {run.loss}"
