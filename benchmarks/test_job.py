# The tutorial's whole job, 100 epochs of H=16 B=200 T=10 on the bundled
# corpus, timed once; under --benchmark-disable, three feeds of one epoch.
import pytest

import workloads as w


def test_tutorial_job(timed, quick):
    try:
        job = w.Job("rnnext", *((1, 3) if quick else (100, None)))
    except FileNotFoundError as e:
        pytest.skip(str(e))
    means = timed(job, "tutorial job", once=True)
    w.check_job(means, job.V)
