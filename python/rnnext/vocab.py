# The character vocabulary and the text reader. No tokenisation beyond single
# characters, and no unknown-character slot: text outside the vocabulary is
# an error, so a model never trains on characters it cannot sample.
from __future__ import annotations

import codecs
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union

import numpy as np
import numpy.typing as npt

# Characters travel through NumPy as UTF-32 code units; "surrogatepass" lets
# lone surrogates (which Python strings may hold) round-trip as well.
_UTF32 = "utf-32-le"
_PASS = "surrogatepass"
_MAX_CODE_POINT = 0x10FFFF
_SHOWN = 20  # unknown characters listed in an error message
_CHUNK = 1 << 18  # bytes read from a file at a time (as str, up to 4x that)
_SLICE = 1 << 16  # characters turned into ids at a time, bounding temporaries

_Codes = Union[npt.NDArray[np.uint8], npt.NDArray[np.uint32]]


def _id_dtype(V: int) -> np.dtype[np.unsignedinteger[Any]]:
    """The smallest unsigned dtype that holds the ids 0 .. V-1."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if V - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise AssertionError(f"vocabulary of {V} characters exceeds Unicode")


def _code_points(text: str) -> npt.NDArray[np.uint32]:
    return np.frombuffer(text.encode(_UTF32, _PASS), dtype="<u4")


def _narrow_code_points(text: str) -> _Codes:
    """The code points of text: uint8 if all are below 256, else uint32."""
    try:
        return np.frombuffer(text.encode("latin-1"), dtype=np.uint8)
    except UnicodeEncodeError:
        return _code_points(text)


def _slices(text: str) -> Iterator[tuple[int, str]]:
    """(start, text[start : start + _SLICE]) for each slice of text."""
    for i in range(0, len(text), _SLICE):
        yield i, text[i : i + _SLICE]


class _Seen:
    """The distinct characters of every text passed to add, in code order."""

    def __init__(self) -> None:
        self._present = np.zeros(256, dtype=bool)  # by code point

    def add(self, text: str) -> None:
        for _, part in _slices(text):
            codes = _narrow_code_points(part)
            if codes.dtype == np.uint8:
                self._present[:256] |= np.bincount(codes, minlength=256) > 0
                continue
            # Counting would need an array as long as the largest code.
            if len(self._present) == 256:
                grown = np.zeros(_MAX_CODE_POINT + 1, dtype=bool)
                grown[:256] = self._present
                self._present = grown
            self._present[codes] = True

    def chars(self) -> str:
        codes = np.flatnonzero(self._present).astype("<u4")
        return codes.tobytes().decode(_UTF32, _PASS)


def _listing(chars: list[str]) -> str:
    shown = ", ".join(repr(c) for c in chars[:_SHOWN])
    if len(chars) > _SHOWN:
        shown += f", ... ({len(chars) - _SHOWN} more)"
    return shown


class UnknownCharacters(ValueError):
    """Text with characters outside a vocabulary of ``vocab_size``.

    ``unknown`` lists them, distinct and in code point order; ``listing``
    is how messages show them.
    """

    def __init__(self, unknown: list[str], vocab_size: int) -> None:
        self.unknown, self.vocab_size = unknown, vocab_size
        self.listing = _listing(unknown)
        super().__init__(
            f"text has characters not in the vocabulary of {vocab_size} "
            f"({len(unknown)} distinct): {self.listing}"
        )

    def __reduce__(self) -> tuple[type[UnknownCharacters], tuple[list[str], int]]:
        return (type(self), (self.unknown, self.vocab_size))


class UndecodableText(ValueError):
    """A file whose bytes are not valid in the encoding it was read with.

    ``problem`` says where and why; the message adds the remedy, in the
    Python API's words (``encoding=...``).
    """

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(
            f"{problem}; pass the file's encoding, e.g. encoding='latin-1'"
        )

    def __reduce__(self) -> tuple[type[UndecodableText], tuple[str]]:
        return (type(self), (self.problem,))


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

        # encode's table from code point to id. Characters outside the
        # vocabulary get id V where the dtype holds it, else 0, and the last
        # entry is always one of them: larger code points are clipped to it.
        V = len(chars)
        codes = _code_points(chars)
        self._codes = codes
        self._marks_unknown = V <= np.iinfo(self._dtype).max
        unknown = V if self._marks_unknown else 0
        self._id_of = np.full(max(256, int(codes.max()) + 2), unknown, self._dtype)
        self._id_of[codes] = np.arange(V)

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        """The sorted distinct characters of ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str; got {type(text).__name__}")
        if not text:
            raise ValueError("cannot build a vocabulary from empty text")
        seen = _Seen()
        seen.add(text)
        return cls(seen.chars())

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
        ids = np.empty(len(text), dtype=self._dtype)
        self._encode_into(ids, text)
        return ids

    def _encode_into(
        self, ids: npt.NDArray[np.unsignedinteger[Any]], text: str
    ) -> None:
        """Write the ids of text into ids, an array of len(text) self.dtype."""
        assert ids.shape == (len(text),) and ids.dtype == self._dtype
        for i, part in _slices(text):
            codes = _narrow_code_points(part)
            out = ids[i : i + len(part)]
            self._id_of.take(codes, out=out, mode="clip")
            if self._marks_unknown:
                known = int(out.max()) < len(self)
            else:
                known = np.array_equal(self._codes.take(out), codes)
            if not known:
                seen = _Seen()
                seen.add(text)
                self._check_known(seen.chars())
                raise AssertionError("an unknown character went unlisted")

    def _check_known(self, chars: str) -> None:
        """Raise UnknownCharacters listing the chars not in the vocabulary.

        ``chars`` are distinct and in code point order, as _Seen gives them.
        """
        mine = set(self._chars)
        unknown = [c for c in chars if c not in mine]
        if unknown:
            raise UnknownCharacters(unknown, len(self))

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


def _differences(ours: Vocabulary, theirs: Vocabulary, whose: str) -> str:
    """What sets vocabulary ``ours`` apart from ``whose``, ``theirs``."""
    mine, other = set(ours.chars), set(theirs.chars)
    extra = [c for c in ours.chars if c not in other]
    missing = [c for c in theirs.chars if c not in mine]
    parts = [f"it has {len(ours)} characters, {whose} {len(theirs)}"]
    if extra:
        parts.append(f"{len(extra)} not in {whose} ({_listing(extra)})")
    if missing:
        parts.append(f"{len(missing)} only in {whose} ({_listing(missing)})")
    if not extra and not missing:
        parts.append("the same characters in another order, so other ids")
    return "; ".join(parts)


def read_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> str:
    """The text of a file, with ``\\r\\n`` turned into ``\\n``.

    A leading byte order mark is dropped. A missing path, a directory or an
    empty file raises FileNotFoundError, IsADirectoryError or ValueError;
    bytes that do not decode raise ValueError naming the byte offset.
    """
    p = _text_file(path, encoding)
    text = "".join(_read_pieces(p, encoding))
    if not text:
        raise ValueError(f"{p} is empty; expected some text")
    return text


def _text_file(path: str | os.PathLike[str], encoding: str) -> Path:
    """The path, once the encoding is known and the file is there."""
    p = Path(path)
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"unknown text encoding {encoding!r}") from None
    # The flag that bytes.decode itself checks; base64 and the like lack it.
    if not getattr(info, "_is_text_encoding", True):
        raise ValueError(
            f"{encoding!r} is not a text encoding; pass one such as 'utf-8' "
            f"or 'latin-1'"
        )
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a directory; expected a text file")
    if not p.exists():
        raise FileNotFoundError(f"no such file: {p}")
    return p


def _stream_encoding(encoding: str, head: bytes) -> str:
    """The codec that decodes, chunk by chunk, what bytes.decode(encoding)
    decodes whole: without a byte order mark, bytes.decode reads UTF-16 and
    UTF-32 in this machine's byte order, while their incremental decoders
    refuse the text."""
    name = codecs.lookup(encoding).name
    boms = {
        "utf-16": (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE),
        "utf-32": (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE),
    }
    if name in boms and not head.startswith(boms[name]):
        return name + ("-le" if sys.byteorder == "little" else "-be")
    return encoding


def _read_pieces(p: Path, encoding: str) -> Iterator[str]:
    """The text of a file as non-empty pieces, one per _CHUNK bytes read.

    Joined, the pieces are read_text's text: the byte order mark dropped and
    each "\\r\\n" turned into "\\n", also where one straddles two pieces.
    """
    at_start = True  # until the first character, which may be a BOM
    cr = ""  # a carriage return that ended a piece: a line feed may follow
    fed = 0  # bytes given to the decoder so far
    with open(p, "rb") as f:
        head = f.read(4)
        f.seek(0)
        codec = _stream_encoding(encoding, head)
        decoder = codecs.getincrementaldecoder(codec)(errors="strict")
        while True:
            raw = f.read(_CHUNK)
            fed += len(raw)
            try:
                text = decoder.decode(raw, final=not raw)
                if not raw:
                    # utf-8-sig keeps a partial BOM even at the end; what is
                    # left fails to decode, as it does in bytes.decode.
                    text += decoder.getstate()[0].decode(codec)
            except UnicodeDecodeError as e:
                # e.object is what the decoder was decoding: its pending
                # bytes and this chunk, so it ends at byte `fed`.
                offset = fed - len(e.object) + e.start
                raise UndecodableText(
                    f"{p} is not valid {encoding}: byte {e.object[e.start]:#04x} "
                    f"at offset {offset} ({e.reason})"
                ) from None
            except UnicodeError as e:  # "pending buffer overflow", say
                raise UndecodableText(
                    f"{p} is not valid {encoding}: {e} before offset {fed}"
                ) from None
            if at_start and text:
                text, at_start = text.removeprefix("\ufeff"), False
            text, cr = cr + text, ""
            if raw and text.endswith("\r"):
                text, cr = text[:-1], "\r"
            if "\r" in text:  # far quicker to find than "\r\n"
                text = text.replace("\r\n", "\n")
            if text:
                yield text
            if not raw:
                return
