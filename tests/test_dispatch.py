# The narrower builds of the kernel (chosen with RNNEXT_ISA) against the
# NumPy oracle, each in a process of its own since the choice is made once.
import os
import subprocess
import sys

import pytest

import rnnext

CHECK = """
import numpy as np, rnnext
from rnnext import reference as ref
assert rnnext._core.isa() == "{isa}", rnnext._core.isa()
rng = np.random.default_rng(0)
for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-4)):
    for V, H, B, T in ((65, 16, 13, 7), (7, 33, 3, 4)):
        model = rnnext.CharRNN(V, H, seed=1, dtype=dtype)
        opt = rnnext.Adagrad(model, clip_norm=0.5)
        P = {{k: v.astype(np.float64) for k, v in model.params.items()}}
        A = {{k: np.full_like(v, 0.1) for k, v in P.items()}}
        h, hr = model.zero_state(B), np.zeros((B, H))
        for _ in range(5):
            X, Y = rng.integers(0, V, (2, B, T))
            loss, h = opt.step(X, Y, h)
            want, hr = ref.step(P, A, X, Y, hr, clip_norm=0.5)
            assert abs(loss - want) <= tol * abs(want), (loss, want)
        for k in P:
            diff = np.abs(model.params[k] - P[k]).max()
            assert diff <= tol * max(1.0, np.abs(P[k]).max()), (k, diff, tol)
print("ok")
"""


@pytest.mark.parametrize("isa", ["avx2", "baseline"])
def test_a_narrower_build_matches_the_oracle(isa):
    if isa == "avx2" and rnnext._core.isa() == "baseline":
        pytest.skip("this CPU has no AVX2")
    env = {**os.environ, "RNNEXT_ISA": isa}
    child = subprocess.run(
        [sys.executable, "-c", CHECK.format(isa=isa)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert child.returncode == 0 and child.stdout.strip() == "ok", child.stderr
