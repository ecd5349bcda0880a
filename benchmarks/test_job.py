# The tutorial's whole job, rnnext.Trainer with TrainConfig()'s defaults (100
# epochs of H=16 B=200 T=10 on the bundled corpus, validation and samples
# included), timed once; under --benchmark-disable, its first three feeds.
import pytest

import workloads as w


def test_tutorial_job(timed, quick):
    try:
        job = w.TrainerJob(max_feeds=3 if quick else None)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    means = timed(job, "tutorial job", once=True)
    w.check_job(means, job.V)
