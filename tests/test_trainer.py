# Trainer: it learns, it equals a plain loop of Adagrad.step with the state
# carried, it resumes bit for bit (mid-epoch too), it stops on NaN without
# writing one, and it reports through events. B = rows, T = steps.
import math

import numpy as np
import pytest

import rnnext
from rnnext import Adagrad, CharRNN, Corpus, Vocabulary
from rnnext.checkpoint import load_checkpoint
from rnnext.model import PARAM_NAMES
from rnnext.trainer import (
    CHUNK,
    EpochEnd,
    Progress,
    Sampled,
    Saved,
    TrainConfig,
    Trainer,
    TrainingDiverged,
)

B, T = 16, 10


@pytest.fixture(scope="module")
def text():
    return rnnext.read_text(rnnext.bundled_corpus_path())[:100_000]


@pytest.fixture(scope="module")
def vocab(text):
    return Vocabulary.from_text(text)


def small(**changes):
    kw = dict(rows=B, steps=T, epochs=2, sample_every=1, val_fraction=0.05)
    kw.update(changes)
    return TrainConfig(**kw)


def make(text, vocab, config):
    corpus = Corpus(vocab.encode(text), config.rows, config.steps, config.val_fraction)
    return Trainer(config, corpus, vocab)


def assert_same_params(a, b):
    """Bit-equal parameters and accumulators of two (model, optimizer)."""
    for k in PARAM_NAMES:
        x, y = a[0].params[k], b[0].params[k]
        assert np.array_equal(x, y), f"{k}: max diff {np.abs(x - y).max()}, want 0"
        x, y = a[1].accumulators[k], b[1].accumulators[k]
        assert np.array_equal(x, y), f"accum {k}: max diff {np.abs(x - y).max()}"


def trained(t):
    return t.model, t.optimizer


def test_defaults_are_the_tutorials():
    c = TrainConfig()
    assert (c.hidden_size, c.steps, c.rows, c.lr) == (16, 10, 200, 0.1)
    assert (c.prime, c.sample_length, c.temperature) == ("Thou", 50, 0.04)
    assert (c.clip, c.clip_norm, c.dtype) == (None, None, "float32")


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"hidden_size": 0}, ValueError, "hidden_size must be at least 1, got 0"),
        ({"rows": 2.5}, TypeError, "rows must be an int, got float"),
        ({"lr": 0.0}, ValueError, r"lr must be a finite number > 0, got 0.0"),
        ({"lr": math.nan}, ValueError, "lr must be a finite number > 0, got nan"),
        ({"temperature": -1}, ValueError, "temperature must be a finite number > 0"),
        ({"val_fraction": 1.0}, ValueError, "val_fraction must be < 1, got 1.0"),
        ({"clip": 1.0, "clip_norm": 1.0}, ValueError, "cannot both be set"),
        ({"clip": 0.0}, ValueError, "clip must be a finite number > 0"),
        ({"prime": ""}, ValueError, "prime must be a non-empty str"),
        ({"sample_every": -1}, ValueError, "sample_every must be at least 0"),
        ({"dtype": "float16"}, TypeError, "dtype must be 'float32' or 'float64'"),
    ],
)
def test_config_errors(changes, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**changes)


def test_numbers_are_stored_as_plain_python_numbers():
    c = TrainConfig(rows=np.int64(8), lr=1, clip=np.float32(2.0))
    assert type(c.rows) is int and type(c.lr) is float and type(c.clip) is float
    assert TrainConfig.from_dict(c.to_dict()) == c


def test_unknown_config_keys_are_named():
    with pytest.raises(ValueError, match=r"unknown config keys \['layers'\]"):
        TrainConfig.from_dict({"layers": 2})


def test_corpus_must_match_the_config(text, vocab):
    corpus = Corpus(vocab.encode(text), B, T + 1, 0.05)
    with pytest.raises(ValueError, match="rows=16, steps=11; the config has"):
        Trainer(small(), corpus, vocab)
    corpus = Corpus(vocab.encode(text), B, T, 0.1)
    with pytest.raises(ValueError, match="corpus has val_fraction=0.1"):
        Trainer(small(), corpus, vocab)


def test_unknown_prime_characters_are_named(text, vocab):
    with pytest.raises(ValueError, match=r"prime 'Thou\$': .*'\$'"):
        make(text, vocab, small(prime="Thou$"))


def test_loss_falls_well_below_ln_V(text, vocab):
    t = make(text, vocab, small(epochs=3))
    t.train()
    ln_V = math.log(len(vocab))
    train, val = t.history[-1]
    assert train < 0.7 * ln_V, f"train loss {train:.3f}, ln V = {ln_V:.3f}"
    assert val < 0.7 * ln_V, f"val loss {val:.3f}, ln V = {ln_V:.3f}"
    assert [e.train for e in t.history] == sorted(
        (e.train for e in t.history), reverse=True
    )


def test_equals_a_plain_loop_of_steps(text, vocab):
    config = small(epochs=2, val_fraction=0.0)
    t = make(text, vocab, config)
    t.train()

    # The definition: state carried from feed to feed, zeros at each epoch.
    corpus = t.corpus
    model = CharRNN(len(vocab), config.hidden_size, seed=config.seed)
    opt = Adagrad(model, config.lr)
    means = []
    for _ in range(config.epochs):
        h, losses = model.zero_state(B), []
        for i in range(corpus.feeds_per_epoch):
            loss, h = opt.step(*corpus.feed(i), h)
            losses.append(loss)
        means.append(sum(losses) / len(losses))
    assert_same_params(trained(t), (model, opt))
    assert [e.train for e in t.history] == means
    assert [e.val for e in t.history] == [None, None]


def test_validation_loss_carries_the_state(text, vocab):
    t = make(text, vocab, small())
    c = t.corpus
    h, total = t.model.zero_state(c.validation_rows), 0.0
    for X, Y in c.validation_feeds():
        loss, h = t.model.evaluate(X, Y, h)
        total += loss
    assert t.validation_loss() == total / c.validation_feeds_per_epoch


def test_same_seed_same_run_other_seed_another(text, vocab):
    runs = []
    for seed in (0, 0, 1):
        samples = []
        t = make(text, vocab, small(seed=seed, temperature=1.0))
        t.train(on_event=lambda e, kept=samples: _keep(e, kept))
        runs.append((t, samples))
    (a, sa), (b, sb), (c, sc) = runs
    assert len(sa) == 2 and all(s.startswith("Thou") and len(s) == 54 for s in sa)
    assert sa == sb and sa != sc
    assert_same_params(trained(a), trained(b))
    assert not np.array_equal(a.model.params["W_input"], c.model.params["W_input"])


@pytest.mark.parametrize("n", [CHUNK * 3 + 7, 400, 593, 700])
def test_resume_is_bit_exact(tmp_path, text, vocab, n):
    # 593 feeds per epoch: n stops mid-epoch, at its end, or in the next one.
    config = small(epochs=3, temperature=1.0)
    straight = make(text, vocab, config)
    assert straight.corpus.feeds_per_epoch == 593
    samples = []
    straight.train(max_feeds=2 * n, on_event=lambda e: _keep(e, samples))

    first = make(text, vocab, config)
    resumed_samples = []
    first.train(max_feeds=n, on_event=lambda e: _keep(e, resumed_samples))
    first.save(tmp_path / "c.npz")
    ckpt = load_checkpoint(tmp_path / "c.npz")
    assert (ckpt.epoch, ckpt.feed) == divmod(n, 593)
    second = Trainer.resume(ckpt, first.corpus, first.vocab)
    second.train(max_feeds=n, on_event=lambda e: _keep(e, resumed_samples))

    assert_same_params(trained(straight), trained(second))
    assert np.array_equal(straight.state, second.state)
    assert (straight.epoch, straight.feed) == (second.epoch, second.feed)
    assert straight.history == second.history
    assert samples == resumed_samples
    assert straight.rng.bit_generator.state == second.rng.bit_generator.state


def _keep(event, samples):
    if isinstance(event, Sampled):
        samples.append(event.text)


def test_stop_saves_the_current_feed(tmp_path, text, vocab):
    t = make(text, vocab, small())
    asked = []

    def stop():
        asked.append(t.feed)
        return len(asked) > 3

    t.train(checkpoint_path=tmp_path / "c.npz", stop=stop)
    assert asked == [0, CHUNK, 2 * CHUNK, 3 * CHUNK]
    assert not t.finished
    ckpt = load_checkpoint(tmp_path / "c.npz")
    assert (ckpt.epoch, ckpt.feed) == (0, 3 * CHUNK)
    assert np.array_equal(ckpt.state, t.state)


def test_events_in_order(tmp_path, text, vocab):
    events = []
    t = make(text, vocab, small(epochs=3, sample_every=2))
    t.train(on_event=events.append, checkpoint_path=tmp_path / "c.npz")
    kinds = [type(e).__name__ for e in events if not isinstance(e, Progress)]
    assert kinds == [
        "EpochEnd",
        "Saved",
        "EpochEnd",
        "Sampled",
        "Saved",
        "EpochEnd",
        "Sampled",
        "Saved",
    ]
    progress = [e for e in events if isinstance(e, Progress)][:3]
    assert [p.feed for p in progress] == [CHUNK, 2 * CHUNK, 3 * CHUNK]
    assert all(p.epoch == 1 and p.feeds == 593 for p in progress)
    end = next(e for e in events if isinstance(e, EpochEnd))
    assert end.bits_per_char == end.val_loss / math.log(2)
    assert (end.train_loss, end.val_loss) == t.history[0]
    saved = [e for e in events if isinstance(e, Saved)]
    assert [(s.epoch, s.feed) for s in saved] == [(1, 0), (2, 0), (3, 0)]


def test_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path, text, vocab):
    path = tmp_path / "c.npz"
    t = make(text, vocab, small(epochs=1))
    t.train(checkpoint_path=path)
    good = path.read_bytes()

    huge = small(epochs=3, lr=1e38)  # the updates overflow float32
    t = Trainer.resume(load_checkpoint(path), t.corpus, t.vocab, huge)
    with pytest.raises(TrainingDiverged, match="at epoch 2, feed .*try a lower"):
        t.train(checkpoint_path=path)
    assert path.read_bytes() == good
    with np.load(path) as z:
        for k in z.files:
            if z[k].dtype.kind == "f":
                assert np.isfinite(z[k]).all(), k
    with pytest.raises(RuntimeError, match="this run has diverged"):
        t.train()


def test_resume_refuses_structural_changes(tmp_path, text, vocab):
    t = make(text, vocab, small(epochs=1))
    t.train()
    with pytest.raises(ValueError, match="cannot change hidden_size, steps when"):
        Trainer.resume(t.checkpoint(), t.corpus, t.vocab, small(hidden_size=8, steps=5))


def test_resume_checks_the_feed_against_the_corpus(text, vocab):
    t = make(text, vocab, small())
    t.train(max_feeds=500)
    shorter = Corpus(vocab.encode(text[:50_000]), B, T, 0.05)
    with pytest.raises(ValueError, match="feed 500 of an epoch, but this corpus"):
        Trainer.resume(t.checkpoint(), shorter, vocab)
