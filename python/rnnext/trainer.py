# The training loop: epochs of fused Adagrad steps over a Corpus, the hidden
# state carried from feed to feed, validation, samples and checkpoints. It
# prints nothing; it reports through events passed to a callback. Signals
# are the caller's business: ask it to stop through `stop`.
#
# B = rows, T = steps, H = hidden, V = vocabulary, F = feeds per epoch.
from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from rnnext.checkpoint import (
    Checkpoint,
    EpochLoss,
    NonFiniteCheckpoint,
    save_checkpoint,
)
from rnnext.corpus import Corpus
from rnnext.model import PARAM_NAMES, Adagrad, CharRNN, check_float, check_int
from rnnext.sampling import sample
from rnnext.vocab import Vocabulary, _differences

FloatArray = npt.NDArray[Any]
IntArray = npt.NDArray[np.integer[Any]]

CHUNK = 25  # feeds per kernel call: the cadence of progress and of `stop`

# A loss above DIVERGENCE_FACTOR * ln V nats per character, a hundred times
# worse than guessing uniformly (an untrained model scores about ln V), means
# the run has diverged even while it stays finite. V = 1 counts as V = 2.
DIVERGENCE_FACTOR = 100

# What may differ between a checkpoint's config and the one it resumes with.
RESUMABLE_CHANGES = (
    "epochs",
    "lr",
    "clip",
    "clip_norm",
    "prime",
    "sample_length",
    "temperature",
    "sample_every",
)


@dataclass(frozen=True)
class TrainConfig:
    """How to train; the defaults are the original tutorial's.

    ``sample_every`` is in epochs (0: only after the last one); each sample
    is ``prime`` followed by ``sample_length`` characters drawn at
    ``temperature``. ``seed`` sets the initial weights and the samples.
    """

    hidden_size: int = 16
    steps: int = 10
    rows: int = 200
    lr: float = 0.1
    epochs: int = 100
    prime: str = "Thou"
    sample_length: int = 50
    temperature: float = 0.04
    val_fraction: float = 0.05
    clip: float | None = None
    clip_norm: float | None = None
    seed: int = 0
    sample_every: int = 10
    dtype: str = "float32"

    def __post_init__(self) -> None:
        # Each number is checked and stored as a plain int or float.
        def keep(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        for name in ("hidden_size", "steps", "rows", "epochs", "sample_length"):
            keep(name, check_int(getattr(self, name), name, minimum=1))
        for name in ("seed", "sample_every"):
            keep(name, check_int(getattr(self, name), name, minimum=0))
        for name in ("lr", "temperature"):
            keep(name, check_float(getattr(self, name), name, positive=True))
        keep(
            "val_fraction",
            check_float(self.val_fraction, "val_fraction", positive=False),
        )
        if self.val_fraction >= 1:
            raise ValueError(f"val_fraction must be < 1, got {self.val_fraction}")
        for name in ("clip", "clip_norm"):
            if getattr(self, name) is not None:
                keep(name, check_float(getattr(self, name), name, positive=True))
        if self.clip is not None and self.clip_norm is not None:
            raise ValueError("clip and clip_norm cannot both be set: choose one")
        if not isinstance(self.prime, str):
            raise TypeError(f"prime must be a str, got {type(self.prime).__name__}")
        if not self.prime:
            raise ValueError(f"prime must be a non-empty str, got {self.prime!r}")
        # An unsupported dtype is a TypeError, as it is for CharRNN.
        if self.dtype not in ("float32", "float64"):
            raise TypeError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The inverse of to_dict; unknown keys raise ValueError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known: {sorted(known)}")
        return cls(**d)


# Events, in the order a training run reports them.


@dataclass(frozen=True)
class Progress:
    """After each chunk of feeds: ``feed`` of ``feeds`` done in ``epoch``."""

    epoch: int  # 1-based, the epoch under way
    epochs: int
    feed: int
    feeds: int
    loss: float  # mean training loss of this epoch's feeds so far
    tokens_per_second: float  # of this epoch's training steps so far


@dataclass(frozen=True)
class EpochEnd:
    epoch: int
    epochs: int
    train_loss: float
    val_loss: float | None  # None without a validation tail
    bits_per_char: float  # of val_loss, else of train_loss
    tokens_per_second: float  # training steps only
    seconds: float  # the whole epoch, validation included


@dataclass(frozen=True)
class Sampled:
    epoch: int
    text: str  # the prime, then the generated characters


@dataclass(frozen=True)
class Saved:
    path: Path
    epoch: int  # epochs done
    feed: int  # feeds done in the next epoch


Event = Union[Progress, EpochEnd, Sampled, Saved]


class TrainingDiverged(FloatingPointError):
    """The run diverged; nothing after the last good checkpoint is saved.

    ``what`` says how: "the loss became nan" (NaN, infinite, or above
    DIVERGENCE_FACTOR * ln V), or "W_hidden became NaN or infinite".
    ``epoch`` and ``feed`` (1-based) say where; ``loss`` is that loss, NaN
    when an array diverged instead.
    """

    def __init__(
        self,
        loss: float,
        epoch: int,
        feed: int,
        config: TrainConfig,
        what: str | None = None,
    ):
        self.loss, self.epoch, self.feed, self.config = loss, epoch, feed, config
        self.what = what if what is not None else f"the loss became {loss}"
        clipping = (
            "a smaller clip"
            if config.clip is not None
            else "a smaller clip_norm"
            if config.clip_norm is not None
            else "clipping the gradients (clip or clip_norm)"
        )
        super().__init__(
            f"{self.what} at epoch {epoch}, feed {feed}; try a lower "
            f"learning rate (lr is {config.lr}) or {clipping}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.loss, self.epoch, self.feed, self.config, self.what),
        )


class Trainer:
    """Trains a CharRNN on a Corpus laid out with the config's rows and steps.

    ``Trainer(config, corpus, vocab)`` starts afresh; ``Trainer.resume``
    goes on from a Checkpoint, and gives the same parameters, bit for bit,
    as a run that never stopped. ``train`` runs until the configured epochs
    are done (or until ``max_feeds`` feeds, or ``stop()``) and may be called
    again; ``checkpoint()`` and ``save()`` capture the run between feeds.
    """

    def __init__(
        self,
        config: TrainConfig,
        corpus: Corpus,
        vocab: Vocabulary,
        *,
        _resume: Checkpoint | None = None,
    ) -> None:
        c = config
        if (corpus.rows, corpus.steps) != (c.rows, c.steps):
            raise ValueError(
                f"corpus is laid out with rows={corpus.rows}, steps="
                f"{corpus.steps}; the config has rows={c.rows}, steps={c.steps}"
            )
        if corpus.val_fraction != c.val_fraction:
            raise ValueError(
                f"corpus has val_fraction={corpus.val_fraction}; the config "
                f"has {c.val_fraction}"
            )
        try:
            vocab.encode(c.prime)
        except ValueError as e:
            raise ValueError(f"prime {c.prime!r}: {e}") from None
        self.config, self.corpus, self.vocab = c, corpus, vocab
        self._rows = corpus.train_rows()

        if _resume is None:
            self.model = CharRNN(len(vocab), c.hidden_size, seed=c.seed, dtype=c.dtype)
            self.optimizer = Adagrad(
                self.model, c.lr, clip=c.clip, clip_norm=c.clip_norm
            )
            self.epoch = 0  # epochs done
            self.feed = 0  # feeds done in the epoch under way
            self.state = self.model.zero_state(c.rows)
            # A stream apart from the one that drew the initial weights.
            self.rng = np.random.default_rng((c.seed, 1))
            self.history: list[EpochLoss] = []
            self._loss_sum = 0.0
        else:
            r = _resume
            self.model, self.optimizer = r.model, r.optimizer
            self.optimizer.lr = c.lr
            self.optimizer.clip, self.optimizer.clip_norm = c.clip, c.clip_norm
            self.epoch, self.feed = r.epoch, r.feed
            self.state = (
                r.state if r.state is not None else self.model.zero_state(c.rows)
            )
            self.rng, self.history = r.rng, list(r.history)
            self._loss_sum = r.loss_sum
            F = corpus.feeds_per_epoch
            if self.feed >= F:
                raise ValueError(
                    f"the checkpoint is at feed {self.feed} of an epoch, but "
                    f"this corpus has only {F} feeds per epoch"
                )
        if self.model.vocab_size != len(vocab):
            raise ValueError(
                f"model has vocab_size={self.model.vocab_size}, vocabulary "
                f"has {len(vocab)} characters"
            )
        self._diverged: TrainingDiverged | None = None
        # The position (see _last_feed) whose arrays _check found sound.
        self._checked: tuple[int, int] | None = None

    @classmethod
    def resume(
        cls,
        checkpoint: Checkpoint,
        corpus: Corpus,
        vocab: Vocabulary,
        config: TrainConfig | None = None,
    ) -> Trainer:
        """Go on from a checkpoint, on the corpus it was trained on.

        ``vocab`` is the vocabulary the corpus was encoded with; it must be
        the checkpoint's (``load_corpus(..., vocab=checkpoint.vocab)`` gives
        that), else the ids would mean other characters: ValueError.
        ``config`` defaults to the checkpoint's; it may differ from it only
        in RESUMABLE_CHANGES (more epochs, a lower lr, sampling settings).
        The Trainer takes over the checkpoint's model and arrays.
        """
        if not isinstance(vocab, Vocabulary):
            raise TypeError(
                f"vocab must be the Vocabulary the corpus was encoded with, "
                f"got {type(vocab).__name__}"
            )
        if vocab != checkpoint.vocab:
            raise ValueError(
                f"the corpus's vocabulary is not the checkpoint's: "
                f"{_differences(vocab, checkpoint.vocab, 'the checkpoint')}; "
                f"load the corpus with vocab=checkpoint.vocab"
            )
        saved = TrainConfig.from_dict(checkpoint.config)
        if config is None:
            config = saved
        changed = [
            k
            for k in saved.to_dict()
            if k not in RESUMABLE_CHANGES and getattr(config, k) != getattr(saved, k)
        ]
        if changed:
            was = ", ".join(f"{k}={getattr(saved, k)!r}" for k in changed)
            raise ValueError(
                f"cannot change {', '.join(changed)} when resuming (the "
                f"checkpoint has {was}); only {', '.join(RESUMABLE_CHANGES)} may"
            )
        return cls(config, corpus, vocab, _resume=checkpoint)

    @property
    def finished(self) -> bool:
        """Whether all the configured epochs are done."""
        return self.epoch >= self.config.epochs

    @property
    def tokens_per_feed(self) -> int:
        return self.config.rows * self.config.steps

    @property
    def loss_limit(self) -> float:
        """The loss (nats per character) above which the run has diverged."""
        return DIVERGENCE_FACTOR * math.log(max(len(self.vocab), 2))

    def checkpoint(self) -> Checkpoint:
        """The run as it stands; shares the Trainer's arrays (save, or copy)."""
        return Checkpoint(
            model=self.model,
            optimizer=self.optimizer,
            vocab=self.vocab,
            config=self.config.to_dict(),
            epoch=self.epoch,
            feed=self.feed,
            state=self.state,
            rng=self.rng,
            history=list(self.history),
            loss_sum=self._loss_sum,
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a checkpoint atomically (see save_checkpoint).

        A state holding NaN or infinity raises TrainingDiverged and writes
        nothing; so does any save once the run has diverged.
        """
        if self._diverged is not None:
            raise RuntimeError(
                f"this run has diverged, nothing is saved: {self._diverged}"
            )
        try:
            return save_checkpoint(path, self.checkpoint())
        except NonFiniteCheckpoint as e:
            raise self._diverge(
                math.nan, *self._last_feed(), what=f"{e.name} became NaN or infinite"
            ) from None

    def _last_feed(self) -> tuple[int, int]:
        """(epoch, feed), 1-based, of the last feed done: (1, 0) before any."""
        if self.feed == 0 and self.epoch > 0:
            return self.epoch, self.corpus.feeds_per_epoch
        return self.epoch + 1, self.feed

    def _diverge(
        self, loss: float, epoch: int, feed: int, what: str | None = None
    ) -> TrainingDiverged:
        """Mark the run diverged; returns the exception to raise."""
        if what is None and math.isfinite(loss):
            what = (
                f"the loss became {loss:.4g} (above {DIVERGENCE_FACTOR} ln V = "
                f"{self.loss_limit:.4g})"
            )
        self._diverged = TrainingDiverged(loss, epoch, feed, self.config, what)
        return self._diverged

    def _is_diverged(self, loss: float) -> bool:
        return not math.isfinite(loss) or loss > self.loss_limit

    def _check(self) -> None:
        """Raise TrainingDiverged if what the last update left has diverged.

        train checks the loss of each feed, which the update before it
        made; this checks the last update: every parameter and accumulator,
        and the loss of the feed that comes next. It runs before a run is
        saved or handed back, so neither happens to a diverged one.
        """
        at = self._last_feed()
        if at == self._checked:
            return
        arrays = [(k, self.model.params[k]) for k in PARAM_NAMES]
        arrays += [
            (f"accumulator of {k}", self.optimizer.accumulators[k]) for k in PARAM_NAMES
        ]
        for name, a in arrays:
            if not np.isfinite(a).all():
                raise self._diverge(
                    math.nan, *at, what=f"{name} became NaN or infinite"
                )
        F = self.corpus.feeds_per_epoch
        if self.feed < F:
            X, Y = self.corpus.feed(self.feed)
            h = self.state
        else:  # at an epoch's end: the first feed, from a zero state
            X, Y = self.corpus.feed(0)
            h = self.model.zero_state(self.config.rows)
        loss, _ = self.model.evaluate(X, Y, h)
        if self._is_diverged(loss):
            raise self._diverge(loss, *at)
        self._checked = at

    def validation_loss(self) -> float | None:
        """Mean loss over the validation tail, the state carried; None if none."""
        feeds = self.corpus.validation_feeds_per_epoch
        if feeds == 0:
            return None
        h = self.model.zero_state(self.corpus.validation_rows)
        total = 0.0
        for X, Y in self.corpus.validation_feeds():
            loss, h = self.model.evaluate(X, Y, h)
            total += loss
        return total / feeds

    def sample(self) -> str:
        """Prime and sample_length characters drawn with a seed from self.rng."""
        c = self.config
        seed = int(self.rng.integers(2**63))
        (text,) = sample(
            self.model,
            self.vocab,
            c.prime,
            c.sample_length,
            temperature=c.temperature,
            seed=seed,
        )
        return text

    def train(
        self,
        *,
        on_event: Callable[[Event], None] | None = None,
        checkpoint_path: str | os.PathLike[str] | None = None,
        stop: Callable[[], bool] | None = None,
        max_feeds: int | None = None,
    ) -> None:
        """Train until finished, ``max_feeds`` feeds are done, or ``stop()``.

        With ``checkpoint_path``, a checkpoint is written after every epoch
        and when stopping early (by ``stop`` or ``max_feeds``). ``stop`` is
        asked between chunks of CHUNK feeds. A loss that is NaN, infinite or
        above ``loss_limit``, or a weight or accumulator that is NaN or
        infinite, raises TrainingDiverged and writes nothing, so the file
        keeps the last good checkpoint; the Trainer then refuses to go on.
        """
        if self._diverged is not None:
            raise RuntimeError(f"this run has diverged: {self._diverged}")
        emit = on_event or (lambda event: None)
        left = (
            math.inf
            if max_feeds is None
            else check_int(max_feeds, "max_feeds", minimum=0)
        )
        c, F = self.config, self.corpus.feeds_per_epoch

        saved_at: tuple[int, int] | None = None

        def save() -> None:
            nonlocal saved_at
            if checkpoint_path is not None and saved_at != (self.epoch, self.feed):
                emit(Saved(self.save(checkpoint_path), self.epoch, self.feed))
                saved_at = (self.epoch, self.feed)

        while not self.finished:
            epoch_start = time.perf_counter()
            fed, step_seconds = 0, 0.0  # by this call, in this epoch
            while self.feed < F:
                if left <= 0 or (stop is not None and stop()):
                    self._check()
                    save()
                    return
                n = int(min(CHUNK, F - self.feed, left))
                t0 = time.perf_counter()
                losses, h = self.optimizer.steps(
                    self._rows, c.steps, self.feed, n, self.state
                )
                step_seconds += time.perf_counter() - t0
                bad = ~np.isfinite(losses) | (losses > self.loss_limit)
                if bad.any():
                    i = int(np.argmax(bad))
                    raise self._diverge(
                        float(losses[i]), self.epoch + 1, self.feed + i + 1
                    )
                for loss in losses.tolist():  # in feed order, however chunked
                    self._loss_sum += loss
                self.state, self.feed, left = h, self.feed + n, left - n
                fed += n
                emit(
                    Progress(
                        self.epoch + 1,
                        c.epochs,
                        self.feed,
                        F,
                        self._loss_sum / self.feed,
                        fed * self.tokens_per_feed / max(step_seconds, 1e-9),
                    )
                )
            self._end_epoch(emit, epoch_start, fed / max(step_seconds, 1e-9))
            save()

    def _end_epoch(
        self, emit: Callable[[Event], None], started: float, feeds_per_second: float
    ) -> None:
        c, F = self.config, self.corpus.feeds_per_epoch
        train_loss = self._loss_sum / F
        val_loss = self.validation_loss()
        if val_loss is not None and self._is_diverged(val_loss):
            raise self._diverge(val_loss, self.epoch + 1, F)
        self._check()

        self.epoch += 1
        self.feed, self._loss_sum = 0, 0.0
        self.state = self.model.zero_state(c.rows)
        self.history.append(EpochLoss(train_loss, val_loss))
        shown = val_loss if val_loss is not None else train_loss
        emit(
            EpochEnd(
                self.epoch,
                c.epochs,
                train_loss,
                val_loss,
                shown / math.log(2),
                feeds_per_second * self.tokens_per_feed,
                time.perf_counter() - started,
            )
        )
        every = c.sample_every
        if (every and self.epoch % every == 0) or self.epoch == c.epochs:
            emit(Sampled(self.epoch, self.sample()))
