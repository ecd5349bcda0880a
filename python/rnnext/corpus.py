# The corpus laid out for truncated backpropagation through time, and the
# path of the bundled Shakespeare text. Carrying the hidden state from one
# feed to the next is the trainer's job, not this file's.
#
# B = rows, T = steps, L = characters per row.
#
# The training part is cut into B contiguous rows of L = (n_train - 1) // B
# characters: row b is ids[b*L : (b+1)*L]. Feed i is the T columns starting
# at i*T, and its targets are the characters one further on, so Y[b, t] is
# the true next character of X[b, t]: nothing wraps around and no target
# comes from the validation tail. The last L % T columns never form a feed.
# Row b of feed i+1 continues row b of feed i, so a trainer carries each
# feed's final hidden state into the next and resets it at each epoch.
from __future__ import annotations

import importlib.resources
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rnnext.vocab import Vocabulary, _read_pieces, _Seen, _text_file

IntArray = npt.NDArray[np.integer[Any]]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive; got {value}")
    return int(value)


def _fraction(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"val_fraction must be a number; got {type(value).__name__}")
    f = float(value)
    if not 0.0 <= f < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1); got {value}")
    return f


def _rows(ids: IntArray, B: int, L: int) -> IntArray:
    """ids[:B*L] as a (B, L) view; ids are never copied whole."""
    return ids[: B * L].reshape(B, L)


class Corpus:
    """Feeds of (X, Y), each (rows, steps), cut from a 1-D array of ids.

    ``ids`` may be a ``numpy.memmap``: the layout uses views, and each feed
    copies only its own rows*steps characters. The ids are not range-checked
    here; the model checks them against its vocabulary size.

    The last ``n_val = int(len(ids) * val_fraction)`` ids are held out as a
    contiguous validation tail, laid out like the training part. A tail too
    short for ``rows`` rows uses fewer: ``validation_rows = min(rows,
    (n_val - 1) // steps)``, so that every validation row holds at least one
    feed. ``val_fraction`` may be changed later; the layout follows it.
    """

    def __init__(
        self, ids: IntArray, rows: int, steps: int, val_fraction: float = 0.0
    ) -> None:
        if not isinstance(ids, np.ndarray):
            raise TypeError(
                f"ids must be a numpy integer array; got {type(ids).__name__}"
            )
        if ids.dtype.kind not in "iu":
            raise TypeError(f"ids must be integers; got dtype {ids.dtype}")
        if ids.ndim != 1:
            raise ValueError(f"ids must be 1-D; got shape {ids.shape}")
        self._ids = ids
        self._B = _positive_int("rows", rows)
        self._T = _positive_int("steps", steps)
        self.val_fraction = val_fraction

    @property
    def val_fraction(self) -> float:
        return self._val_fraction

    @val_fraction.setter
    def val_fraction(self, value: float) -> None:
        # Everything is checked before anything is changed.
        f = _fraction(value)
        B, T, n = self._B, self._T, len(self._ids)
        n_val = int(n * f)
        n_train = n - n_val

        if n_train < B * T + 1:
            held = f" ({n} ids less {n_val} held out)" if n_val else ""
            raise ValueError(
                f"corpus too short for rows={B}, steps={T}: one feed needs "
                f"rows*steps + 1 = {B * T + 1} training characters; got "
                f"{n_train}{held}"
            )
        B_val = min(B, (n_val - 1) // T) if n_val else 0
        if f > 0 and B_val < 1:
            raise ValueError(
                f"validation tail of {n_val} characters (val_fraction={value}) "
                f"cannot hold one feed of one row: that needs steps + 1 = "
                f"{T + 1}; raise val_fraction or lower steps"
            )

        self._val_fraction = f
        self._n_train = n_train
        self._L = (n_train - 1) // B
        self._B_val = B_val
        self._L_val = (n_val - 1) // B_val if B_val else 0

    @property
    def ids(self) -> IntArray:
        """The whole array of ids, training part then validation tail."""
        return self._ids

    @property
    def rows(self) -> int:
        return self._B

    @property
    def steps(self) -> int:
        return self._T

    @property
    def n_train(self) -> int:
        """Characters in the training part, ids[:n_train]."""
        return self._n_train

    @property
    def n_val(self) -> int:
        """Characters in the validation tail, ids[n_train:]."""
        return len(self._ids) - self._n_train

    @property
    def row_length(self) -> int:
        """L: characters in each training row."""
        return self._L

    @property
    def feeds_per_epoch(self) -> int:
        return self._L // self._T

    @property
    def validation_rows(self) -> int:
        """Rows of each validation feed (0 when val_fraction is 0)."""
        return self._B_val

    @property
    def validation_feeds_per_epoch(self) -> int:
        return self._L_val // self._T

    def __repr__(self) -> str:
        return (
            f"Corpus({len(self._ids)} ids, rows={self._B}, steps={self._T}, "
            f"val_fraction={self._val_fraction}: {self.feeds_per_epoch} "
            f"training feeds, {self.validation_feeds_per_epoch} validation)"
        )

    def feed(self, i: int) -> tuple[IntArray, IntArray]:
        """Training feed i as new C-contiguous (rows, steps) arrays X, Y."""
        F = self.feeds_per_epoch
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"feed index must be an int; got {type(i).__name__}")
        if not 0 <= i < F:
            raise IndexError(f"feed index must be in [0, {F}); got {i}")
        return self._cut(self._ids[: self._n_train], self._B, self._L, int(i))

    def train_feeds(self) -> Iterator[tuple[IntArray, IntArray]]:
        """The feeds of one epoch in order: feed(0), feed(1), ..."""
        train = self._ids[: self._n_train]
        for i in range(self.feeds_per_epoch):
            yield self._cut(train, self._B, self._L, i)

    def validation_feeds(self) -> Iterator[tuple[IntArray, IntArray]]:
        """The validation feeds in order, each (validation_rows, steps).

        Empty when val_fraction is 0. Row b of one feed continues row b of
        the one before, as in training.
        """
        tail = self._ids[self._n_train :]
        for i in range(self.validation_feeds_per_epoch):
            yield self._cut(tail, self._B_val, self._L_val, i)

    def train_rows(self) -> IntArray:
        """The training part as a read-only (rows, L + 1) view, never a copy.

        Row b is ids[b*L : (b+1)*L + 1], so neighbouring rows share one id.
        Feed i is X = rows[:, i*T : (i+1)*T], Y = rows[:, i*T+1 : (i+1)*T+1],
        the same arrays as feed(i) without the copy.
        """
        train = self._ids[: self._n_train]
        (s,) = train.strides
        view: IntArray = np.lib.stride_tricks.as_strided(
            train,
            shape=(self._B, self._L + 1),
            strides=(self._L * s, s),
            writeable=False,
        )
        return view

    # The same iterators, for callers that speak of batches.
    train_batches = train_feeds
    validation_batches = validation_feeds

    def _cut(self, ids: IntArray, B: int, L: int, i: int) -> tuple[IntArray, IntArray]:
        T = self._T
        cols = slice(i * T, (i + 1) * T)
        X = np.array(_rows(ids, B, L)[:, cols], order="C")
        Y = np.array(_rows(ids[1:], B, L)[:, cols], order="C")
        return X, Y


def load_corpus(
    path: str | os.PathLike[str],
    rows: int,
    steps: int,
    *,
    val_fraction: float = 0.0,
    vocab: Vocabulary | None = None,
    encoding: str = "utf-8",
) -> tuple[Corpus, Vocabulary]:
    """Read a text file and lay it out: returns (corpus, vocabulary).

    The text is what ``read_text`` gives. Without ``vocab`` the vocabulary
    is built from the whole text, validation tail included. With one (say,
    from a checkpoint), characters outside it raise ValueError. The file is
    read twice, a quarter of a megabyte at a time, so that besides the ids
    (one byte per character up to 256 distinct ones) little memory is used.
    For ids larger than memory, ``np.save`` them once and pass
    ``np.load(path, mmap_mode="r")`` to ``Corpus``.
    """
    p = _text_file(path, encoding)

    # First pass: how many characters, and which.
    n, seen = 0, _Seen()
    for piece in _read_pieces(p, encoding):
        n += len(piece)
        seen.add(piece)
    if n == 0:
        raise ValueError(f"{p} is empty; expected some text")
    if vocab is None:
        vocab = Vocabulary(seen.chars())
    else:
        vocab._check_known(seen.chars())

    # The layout is checked before the second pass fills in the ids.
    ids = np.empty(n, dtype=vocab.dtype)
    corpus = Corpus(ids, rows, steps, val_fraction)

    # Second pass: the ids, piece by piece.
    changed = f"{p} changed while it was read; load it again"
    i = 0
    for piece in _read_pieces(p, encoding):
        if i + len(piece) > n:
            raise ValueError(changed)
        vocab._encode_into(ids[i : i + len(piece)], piece)
        i += len(piece)
    if i != n:
        raise ValueError(changed)
    return corpus, vocab


def bundled_corpus_path() -> Path:
    """The path of the Shakespeare text installed with rnnext."""
    resource = importlib.resources.files("rnnext") / "data" / "shakespeare.txt"
    if not isinstance(resource, Path) or not resource.is_file():
        raise FileNotFoundError(
            f"the bundled corpus is missing (looked for {resource}); it is "
            f"installed by `pip install .` from a checkout that has "
            f"data/shakespeare.txt (rebuild it with data/build_corpus.py)"
        )
    return resource
