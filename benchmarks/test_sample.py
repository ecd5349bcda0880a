# Sampling one stream at H=16, greedy and weighted: rnnext.sample against
# the oracle's NumPy loop, in characters per second. Greedy ids are checked
# to be argmaxes of the oracle's logits, weighted ones to be as surprising
# as the oracle's entropy says.
import pytest

import workloads as w

LENGTH = {"rnnext": 20_000, "numpy": 500}


@pytest.mark.parametrize("greedy", [True, False], ids=["greedy", "weighted"])
@pytest.mark.parametrize("impl", ["rnnext", "numpy"])
def test_sample(impl, greedy, corpus, timed, quick):
    if impl == "rnnext" and not w.has_sampler():
        pytest.skip("rnnext has no sampler yet")
    run = w.sample_run(impl, greedy, 100 if quick else LENGTH[impl])
    timed(run, f"sample H=16 {'greedy' if greedy else 'weighted'}")
