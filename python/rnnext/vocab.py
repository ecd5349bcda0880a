# The character vocabulary and the text reader. No tokenisation beyond single
# characters, and no unknown-character slot: text outside the vocabulary is
# an error, so a model never trains on characters it cannot sample.
from __future__ import annotations

import codecs
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# Characters travel through NumPy as UTF-32 code units; "surrogatepass" lets
# lone surrogates (which Python strings may hold) round-trip as well.
_UTF32 = "utf-32-le"
_PASS = "surrogatepass"
_MAX_CODE_POINT = 0x10FFFF
_SHOWN = 20  # unknown characters listed in an error message


def _id_dtype(V: int) -> np.dtype[np.unsignedinteger[Any]]:
    """The smallest unsigned dtype that holds the ids 0 .. V-1."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if V - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise AssertionError(f"vocabulary of {V} characters exceeds Unicode")


def _code_points(text: str) -> npt.NDArray[np.uint32]:
    return np.frombuffer(text.encode(_UTF32, _PASS), dtype="<u4")


def _listing(chars: list[str]) -> str:
    shown = ", ".join(repr(c) for c in chars[:_SHOWN])
    if len(chars) > _SHOWN:
        shown += f", ... ({len(chars) - _SHOWN} more)"
    return shown


class Vocabulary:
    """An ordered set of characters; character i has id i.

    ``Vocabulary.from_text(text)`` takes the sorted distinct characters of
    ``text``. ``encode`` gives ids in ``self.dtype``, the smallest unsigned
    integer type that holds ``len(self) - 1`` (uint8 up to 256 characters).
    For checkpoints, ``to_array``/``from_array`` give and take the code
    points as uint32, so no pickle is needed.
    """

    def __init__(self, chars: str) -> None:
        if not isinstance(chars, str):
            raise TypeError(f"chars must be a str; got {type(chars).__name__}")
        if not chars:
            raise ValueError("a vocabulary needs at least one character; got ''")
        if len(set(chars)) != len(chars):
            repeated = sorted(c for c, n in Counter(chars).items() if n > 1)
            raise ValueError(
                f"vocabulary characters must be distinct; repeated: "
                f"{_listing(repeated)}"
            )
        self._chars = chars
        self._dtype = _id_dtype(len(chars))

        # Lookup tables for encode: code points sorted, with their ids.
        codes = _code_points(chars)
        order = np.argsort(codes, kind="stable")
        self._codes = codes
        self._sorted_codes = codes[order]
        self._sorted_ids = order.astype(self._dtype)

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        """The sorted distinct characters of ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str; got {type(text).__name__}")
        if not text:
            raise ValueError("cannot build a vocabulary from empty text")
        return cls("".join(sorted(set(text))))

    @classmethod
    def from_array(cls, codes: npt.ArrayLike) -> Vocabulary:
        """Rebuild a vocabulary from ``to_array()`` output."""
        a = np.asarray(codes)
        if a.ndim != 1:
            raise ValueError(f"codes must be 1-D; got shape {a.shape}")
        if a.dtype.kind not in "iu":
            raise TypeError(f"codes must be integers; got dtype {a.dtype}")
        if a.size and (a.min() < 0 or a.max() > _MAX_CODE_POINT):
            raise ValueError(
                f"codes must be Unicode code points in [0, {_MAX_CODE_POINT:#x}]; "
                f"got min {a.min()}, max {a.max()}"
            )
        raw = a.astype("<u4").tobytes()
        return cls(raw.decode(_UTF32, _PASS))

    @property
    def chars(self) -> str:
        return self._chars

    @property
    def dtype(self) -> np.dtype[np.unsignedinteger[Any]]:
        """The dtype of the ids that ``encode`` returns."""
        return self._dtype

    def __len__(self) -> int:
        return len(self._chars)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self._chars == other._chars

    def __hash__(self) -> int:
        return hash(self._chars)

    def __repr__(self) -> str:
        if len(self._chars) <= 100:
            return f"Vocabulary({self._chars!r})"
        return f"<Vocabulary of {len(self)} characters: {self._chars[:40]!r}...>"

    def __reduce__(self) -> tuple[type[Vocabulary], tuple[str]]:
        # Pickle and deepcopy carry only the characters; tables are rebuilt.
        return (Vocabulary, (self._chars,))

    def to_array(self) -> npt.NDArray[np.uint32]:
        """The code points, in id order, as a new uint32 array."""
        return self._codes.astype(np.uint32)

    def encode(self, text: str) -> npt.NDArray[np.unsignedinteger[Any]]:
        """Ids of the characters of ``text``, as a 1-D array of ``self.dtype``.

        Raises ValueError listing the characters that are not in the
        vocabulary.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str; got {type(text).__name__}")
        codes = _code_points(text)
        pos = np.searchsorted(self._sorted_codes, codes)
        pos[pos == len(self._sorted_codes)] = 0
        known = self._sorted_codes[pos] == codes
        if not known.all():
            unknown = np.unique(codes[~known]).astype("<u4")
            chars = sorted(unknown.tobytes().decode(_UTF32, _PASS))
            raise ValueError(
                f"text has characters not in the vocabulary of {len(self)} "
                f"({len(chars)} distinct): {_listing(chars)}"
            )
        return self._sorted_ids[pos]

    def decode(self, ids: npt.ArrayLike) -> str:
        """The text of a 1-D sequence of ids in [0, len(self))."""
        a = np.asarray(ids)
        if a.ndim != 1:
            raise ValueError(f"ids must be 1-D; got shape {a.shape}")
        if a.size == 0:
            return ""
        if a.dtype.kind not in "iu":
            raise TypeError(f"ids must be integers; got dtype {a.dtype}")
        lo, hi = a.min(), a.max()
        if lo < 0 or hi >= len(self):
            raise ValueError(
                f"ids must be in [0, {len(self)}) for this vocabulary; "
                f"got min {lo}, max {hi}"
            )
        raw: bytes = self._codes[a].tobytes()
        return raw.decode(_UTF32, _PASS)


def read_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> str:
    """The text of a file, with ``\\r\\n`` turned into ``\\n``.

    A leading byte order mark is dropped. A missing path, a directory or an
    empty file raises FileNotFoundError, IsADirectoryError or ValueError;
    bytes that do not decode raise ValueError naming the byte offset.
    """
    p = Path(path)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"unknown text encoding {encoding!r}") from None
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a directory; expected a text file")
    if not p.exists():
        raise FileNotFoundError(f"no such file: {p}")

    raw = p.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{p} is not valid {encoding}: byte {raw[e.start]:#04x} at offset "
            f"{e.start} ({e.reason}); pass the file's encoding, e.g. "
            f"encoding='latin-1'"
        ) from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if not text:
        raise ValueError(f"{p} is empty; expected some text")
    return text
