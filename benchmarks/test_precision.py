# rnnext's step in float64 against float32, one group per configuration;
# each dtype is checked against the float64 oracle at its own tolerance.
import math

import numpy as np
import pytest

import workloads as w


@pytest.mark.parametrize("config", list(w.CONFIGS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_dtype(config, dtype, corpus, timed):
    run = w.step_run("rnnext", config, dtype=dtype)
    timed(run, f"dtype {config}")
    assert math.isfinite(run.loss), f"{run.name} loss is {run.loss}"
