# Peak memory of training on a large text: tiny Shakespeare repeated to about
# 100 MB (20 MB under --benchmark-disable), loaded with load_corpus and
# trained for a few hundred feeds in a fresh process, the validation tail
# evaluated once. The bound is on memory, not time: the peak resident set
# above that of a process that only imports rnnext and NumPy must stay under
# BOUND times the bytes of the ids. Run with -s to see the figures.
#
# The peak is VmHWM from /proc/self/status, so Linux only: getrusage's
# ru_maxrss would be at least that of pytest, which the child inherits
# through fork and exec.
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

import rnnext
import workloads as w

MB = 2**20
BOUND = 1.5  # peak less baseline, in bytes of ids
FEEDS = 300  # training feeds of B=200 rows, T=10 steps
SHOWN = 2000  # characters checked at each end of the text

PEAK = """
def peak_kib():
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:"))
"""

BASELINE = """
import numpy, rnnext
print(peak_kib())
"""

TRAIN = """
import json, sys, time
import rnnext
from rnnext.trainer import Progress

path, feeds, threads, shown = sys.argv[1], *map(int, sys.argv[2:])
rnnext.set_num_threads(threads)
t0 = time.perf_counter()
corpus, vocab = rnnext.load_corpus(path, rows=200, steps=10, val_fraction=0.05)
seconds = time.perf_counter() - t0
config = rnnext.TrainConfig(rows=200, steps=10, val_fraction=0.05, epochs=1)
trainer = rnnext.Trainer(config, corpus, vocab)
losses = []
trainer.train(
    max_feeds=feeds,
    on_event=lambda e: losses.append(e.loss) if isinstance(e, Progress) else None,
)
val_loss = trainer.validation_loss()
ids = corpus.ids
print(json.dumps({
    "peak_kib": peak_kib(),
    "ids_bytes": ids.nbytes, "n": len(ids), "dtype": ids.dtype.name,
    "chars": vocab.chars, "head": vocab.decode(ids[:shown]),
    "tail": vocab.decode(ids[-shown:]), "losses": losses,
    "feeds": trainer.feed, "val_loss": val_loss, "load_seconds": seconds,
}))
"""


def run(script: str, *args: object) -> str:
    """The last line a fresh interpreter prints running script (and PEAK)."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK + script, *map(str, args)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


@pytest.fixture
def big_text(tmp_path, quick):
    """(path, repeats): tiny Shakespeare written repeats times over."""
    if not w.CORPUS.is_file():
        pytest.skip(w.MISSING)
    if not sys.platform.startswith("linux"):
        pytest.skip("the peak resident set is read from /proc/self/status")
    raw = w.CORPUS.read_bytes()
    repeats = -(-(20 if quick else 100) * MB // len(raw))
    path = tmp_path / "big.txt"
    with open(path, "wb") as f:
        for _ in range(repeats):
            f.write(raw)
    return path, repeats


def test_training_holds_little_more_than_the_ids(big_text):
    path, repeats = big_text
    src = rnnext.read_text(w.CORPUS)
    got = json.loads(run(TRAIN, path, FEEDS, w.THREADS, SHOWN))
    baseline_kib = int(run(BASELINE))

    # The result first: every character read, the loss going down.
    V = len(got["chars"])
    assert got["n"] == repeats * len(src), f"{got['n']} ids for {repeats} copies"
    assert got["chars"] == rnnext.Vocabulary.from_text(src).chars
    assert got["head"] == src[:SHOWN] and got["tail"] == src[-SHOWN:]
    assert got["feeds"] == FEEDS
    losses = got["losses"]
    assert all(math.isfinite(x) for x in losses), losses
    assert abs(losses[0] - math.log(V)) < 0.5, f"first {losses[0]}, ln V {V}"
    assert losses[-1] < losses[0] and got["val_loss"] < math.log(V), got

    ids = got["ids_bytes"]
    peak, baseline = got["peak_kib"] * 1024, baseline_kib * 1024
    ratio = (peak - baseline) / ids
    print(
        f"\nmemory: {path.stat().st_size / MB:.1f} MB file, ids {ids / MB:.1f} "
        f"MB ({got['dtype']}), peak {peak / MB:.1f} MB, baseline "
        f"{baseline / MB:.1f} MB: (peak - baseline) / ids = {ratio:.3f} "
        f"(bound {BOUND}); load_corpus {got['load_seconds']:.2f} s"
    )
    assert ratio < BOUND, (
        f"peak {peak / MB:.1f} MB less baseline {baseline / MB:.1f} MB is "
        f"{ratio:.3f} times the {ids / MB:.1f} MB of ids; bound {BOUND}"
    )
