# Vocabulary and read_text: round trips, id dtypes, checkpoint arrays,
# pickling, encode against a dict lookup, reading in chunks against decoding
# the whole file, and one test per error they raise.
import copy
import pickle
import re
import sys
import tracemalloc

import numpy as np
import pytest

import rnnext.vocab as vocab_module
from rnnext import Vocabulary, read_text

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"


def test_from_text_is_sorted_distinct_characters():
    v = Vocabulary.from_text(TEXT)
    assert v.chars == "".join(sorted(set(TEXT)))
    assert len(v) == len(set(TEXT))


def test_encode_decode_round_trip():
    v = Vocabulary.from_text(TEXT)
    ids = v.encode(TEXT)
    assert ids.shape == (len(TEXT),)
    assert ids.dtype == np.uint8
    assert [v.chars[i] for i in ids] == list(TEXT)
    assert v.decode(ids) == TEXT


def test_ids_follow_the_given_order():
    v = Vocabulary("cab")
    assert v.encode("abcab").tolist() == [1, 2, 0, 1, 2]
    assert v.decode([0, 1, 2]) == "cab"


def test_encode_empty_text():
    v = Vocabulary("ab")
    ids = v.encode("")
    assert ids.shape == (0,)
    assert ids.dtype == np.uint8
    assert v.decode(ids) == ""
    assert v.decode([]) == ""


@pytest.mark.parametrize(
    ("V", "dtype"),
    [(1, np.uint8), (256, np.uint8), (257, np.uint16), (65536, np.uint16),
     (65537, np.uint32)],
)  # fmt: skip
def test_smallest_dtype_that_fits(V, dtype):
    # Code points from U+0100 on, so that none of them is a surrogate.
    v = Vocabulary("".join(chr(0x100 + i) for i in range(V)))
    assert v.dtype == dtype
    ids = v.encode(v.chars)
    assert ids.dtype == dtype
    assert ids[-1] == V - 1
    assert v.decode(ids) == v.chars


def test_non_ascii_and_surrogates_round_trip():
    text = "Ophélie \U0001f3ad \ud800"
    v = Vocabulary.from_text(text)
    assert v.decode(v.encode(text)) == text
    assert Vocabulary.from_array(v.to_array()) == v


def test_to_array_from_array():
    v = Vocabulary.from_text(TEXT)
    a = v.to_array()
    assert a.dtype == np.uint32
    assert a.tolist() == [ord(c) for c in v.chars]
    assert Vocabulary.from_array(a) == v
    assert Vocabulary.from_array(a.astype(np.int64)) == v
    a[0] = ord("z")  # a copy: the vocabulary is not changed
    assert v.to_array()[0] == ord(v.chars[0])


def test_equality_hash_and_repr():
    v = Vocabulary("ab")
    assert v == Vocabulary("ab")
    assert v != Vocabulary("ba")
    assert v != "ab"
    assert len({v, Vocabulary("ab")}) == 1
    assert repr(v) == "Vocabulary('ab')"
    assert eval(repr(v)) == v
    big = Vocabulary("".join(chr(0x100 + i) for i in range(500)))
    assert repr(big).startswith("<Vocabulary of 500 characters: ")


def test_pickle_and_deepcopy():
    v = Vocabulary.from_text(TEXT)
    for w in (pickle.loads(pickle.dumps(v)), copy.deepcopy(v), copy.copy(v)):
        assert w == v
        assert w.dtype == v.dtype
        assert w.decode(w.encode(TEXT)) == TEXT


# Errors, one test per check.


def test_chars_must_be_str():
    with pytest.raises(TypeError, match="chars must be a str; got list"):
        Vocabulary(["a", "b"])


def test_chars_must_not_be_empty():
    with pytest.raises(ValueError, match="at least one character"):
        Vocabulary("")


def test_chars_must_be_distinct():
    with pytest.raises(ValueError, match="distinct; repeated: 'a', 'b'"):
        Vocabulary("abcab")


def test_from_text_needs_str():
    with pytest.raises(TypeError, match="text must be a str; got bytes"):
        Vocabulary.from_text(b"abc")


def test_from_text_needs_text():
    with pytest.raises(ValueError, match="empty text"):
        Vocabulary.from_text("")


def test_encode_needs_str():
    with pytest.raises(TypeError, match="text must be a str; got bytes"):
        Vocabulary("ab").encode(b"ab")


def test_encode_lists_unknown_characters():
    v = Vocabulary("abc")
    msg = r"not in the vocabulary of 3 \(2 distinct\): '\\n', 'é'$"
    with pytest.raises(ValueError, match=msg):
        v.encode("abé\nbé")


def test_encode_shows_at_most_twenty_unknown():
    v = Vocabulary("a")
    unknown = "".join(chr(ord("A") + i) for i in range(25))
    msg = r"\(25 distinct\): 'A', 'B', .*'T', \.\.\. \(5 more\)$"
    with pytest.raises(ValueError, match=msg):
        v.encode("a" + unknown[::-1])


def test_decode_needs_1d():
    with pytest.raises(ValueError, match=r"ids must be 1-D; got shape \(2, 2\)"):
        Vocabulary("ab").decode([[0, 1], [1, 0]])


def test_decode_needs_integers():
    with pytest.raises(TypeError, match="ids must be integers; got dtype float64"):
        Vocabulary("ab").decode([0.0, 1.0])


def test_decode_rejects_bools():
    with pytest.raises(TypeError, match="got dtype bool"):
        Vocabulary("ab").decode([True, False])


@pytest.mark.parametrize("bad", [[0, 2], [-1, 0]])
def test_decode_checks_range(bad):
    with pytest.raises(ValueError, match=r"ids must be in \[0, 2\) .*got min"):
        Vocabulary("ab").decode(bad)


def test_from_array_needs_1d():
    with pytest.raises(ValueError, match=r"codes must be 1-D; got shape \(\)"):
        Vocabulary.from_array(np.uint32(97))


def test_from_array_needs_integers():
    with pytest.raises(TypeError, match="codes must be integers; got dtype <U1"):
        Vocabulary.from_array(np.array(["a", "b"]))


@pytest.mark.parametrize("bad", [-1, 0x110000])
def test_from_array_checks_code_points(bad):
    with pytest.raises(ValueError, match="codes must be Unicode code points"):
        Vocabulary.from_array(np.array([97, bad]))


def test_from_array_rejects_repeats():
    with pytest.raises(ValueError, match="repeated: 'a'"):
        Vocabulary.from_array(np.array([97, 98, 97], dtype=np.uint32))


# read_text


def test_read_text_normalises_line_endings(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"one\r\ntwo\r\nthree\n")
    assert read_text(p) == "one\ntwo\nthree\n"
    assert read_text(str(p)) == "one\ntwo\nthree\n"


def test_read_text_drops_byte_order_mark(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes("\ufeffWhat, ho!\n".encode())
    assert read_text(p) == "What, ho!\n"


def test_read_text_other_encoding(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes("Ophélie\n".encode("latin-1"))
    assert read_text(p, encoding="latin-1") == "Ophélie\n"


def test_read_text_missing_file(tmp_path):
    p = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="no such file: .*nope.txt"):
        read_text(p)


def test_read_text_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory; expected a text"):
        read_text(tmp_path)


def test_read_text_empty_file(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.txt is empty"):
        read_text(p)


def test_read_text_names_the_undecodable_byte(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"abc\xffdef")
    msg = "bad.txt is not valid utf-8: byte 0xff at offset 3"
    with pytest.raises(ValueError, match=msg):
        read_text(p)


def test_read_text_unknown_encoding(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"abc")
    with pytest.raises(ValueError, match="unknown text encoding 'klingon'"):
        read_text(p, encoding="klingon")


# Encoding by table: uint8 code points when the text allows, uint32 else.


def by_dict(v, text):
    """The ids of text by a plain dict, the definition encode must meet."""
    index = {c: i for i, c in enumerate(v.chars)}
    return np.array([index[c] for c in text], dtype=v.dtype)


@pytest.mark.parametrize(
    "chars",
    [
        "cab\n",
        "".join(chr(i) for i in range(255, -1, -1)),  # V = 256: no spare id
        "zé\x00\xff日\U0001f3ad\ud800\U0010ffff",
        "".join(chr(0x100 + i) for i in range(65536)),  # V = 65536, uint16
    ],
    ids=["ascii", "all-bytes", "mixed", "uint16-full"],
)
@pytest.mark.parametrize("slice_", [3, 1 << 16])
def test_encode_matches_a_dict_lookup(chars, slice_, monkeypatch):
    monkeypatch.setattr(vocab_module, "_SLICE", slice_)
    v = Vocabulary(chars)
    rng = np.random.default_rng(0)
    for n in (0, 1, 5, 1000):
        text = "".join(rng.choice(list(chars), n))
        ids = v.encode(text)
        assert ids.dtype == v.dtype and ids.flags.owndata
        np.testing.assert_array_equal(ids, by_dict(v, text))
        low = "".join(c for c in text if ord(c) < 256)  # the uint8 path
        np.testing.assert_array_equal(v.encode(low), by_dict(v, low))


@pytest.mark.parametrize(
    ("chars", "stranger"),
    [
        ("ab", "c"),
        ("ab", "\U0010ffff"),  # past the end of the table
        ("".join(chr(i) for i in range(256)), "\u0100"),
        ("".join(chr(i) for i in range(1, 257)), "\x00"),  # V = 256, no spare
        ("".join(chr(0x100 + i) for i in range(65536)), "a"),
    ],
    ids=["ascii", "beyond-table", "bytes", "bytes-no-spare", "uint16-full"],
)
def test_encode_finds_every_unknown_character(chars, stranger):
    v = Vocabulary(chars)
    msg = r"\(1 distinct\): " + re.escape(repr(stranger)) + "$"
    for text in (stranger, chars[:3] + stranger + chars[:3]):
        with pytest.raises(ValueError, match=msg):
            v.encode(text)


def test_encode_lists_unknown_characters_of_every_slice(monkeypatch):
    monkeypatch.setattr(vocab_module, "_SLICE", 4)
    v = Vocabulary("ab")
    with pytest.raises(ValueError, match=r"\(3 distinct\): 'c', 'd', '日'$"):
        v.encode("abab" + "c" + "abababab" + "日d" + "ab")


def test_encode_holds_little_more_than_the_ids():
    text = "to be, or not to be: that is the question\n" * 100_000
    v = Vocabulary.from_text(text)
    tracemalloc.start()
    try:
        ids = v.encode(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    extra = peak - ids.nbytes
    assert extra < 2 << 20, f"{extra} bytes besides {ids.nbytes} bytes of ids"


@pytest.mark.parametrize("slice_", [2, 1 << 16])
def test_from_text_matches_sorted_set(slice_, monkeypatch):
    monkeypatch.setattr(vocab_module, "_SLICE", slice_)
    for text in (TEXT, "Ophélie \U0001f3ad \ud800 日本", "\U0010ffff\x00"):
        assert Vocabulary.from_text(text).chars == "".join(sorted(set(text)))


# read_text reads a file in chunks of vocab_module._CHUNK bytes; these use
# chunks of a few bytes so that every boundary case falls on one. The oracle
# is the whole file decoded at once.


def whole(raw, encoding):
    return raw.decode(encoding).removeprefix("\ufeff").replace("\r\n", "\n")


TRICKY = [
    ("a\r\nb\r\r\n\r\n\rc\r\n\r", "utf-8"),  # CR LF on every boundary
    ("\r", "utf-8"),
    ("Ophélie, 日本, \U0001f3ad!\r\n" * 3, "utf-8"),  # split characters
    ("\ufeffWhat, ho!\r\n", "utf-8"),
    ("\ufeff\ufeffonly one goes", "utf-8"),
    ("\ufeff\r\nx", "utf-8-sig"),
    ("Ophélie\r\nÿ\r", "latin-1"),
    ("Ophélie\r\n\U0001f3ad\r", "utf-16"),  # with a BOM
    ("Ophélie\r\n\U0001f3ad\r", "utf-16-be"),
    ("\ufeffOphélie\r\n", "utf-32"),
    ("日本語\r\nです\r", "shift_jis"),
]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 1 << 20])
@pytest.mark.parametrize(("text", "encoding"), TRICKY)
def test_read_text_in_chunks_is_the_whole_decode(
    text, encoding, chunk, tmp_path, monkeypatch
):
    monkeypatch.setattr(vocab_module, "_CHUNK", chunk)
    raw = text.encode(encoding)
    p = tmp_path / "t.txt"
    p.write_bytes(raw)
    assert read_text(p, encoding) == whole(raw, encoding)


@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
def test_read_text_utf16_without_bom_is_in_machine_order(chunk, tmp_path, monkeypatch):
    monkeypatch.setattr(vocab_module, "_CHUNK", chunk)
    raw = "Ophélie\r\n".encode(f"utf-16-{sys.byteorder[0]}e")
    p = tmp_path / "t.txt"
    p.write_bytes(raw)
    assert read_text(p, "utf-16") == "Ophélie\n" == whole(raw, "utf-16")


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 1 << 20])
@pytest.mark.parametrize(
    ("raw", "encoding", "byte", "offset", "reason"),
    [
        (b"abc" * 5 + b"\xffdef", "utf-8", 0xFF, 15, "invalid start byte"),
        (b"ab\xc3x", "utf-8", 0xC3, 2, "invalid continuation byte"),
        (b"abc\xe6\x97", "utf-8", 0xE6, 3, "unexpected end of data"),
        (b"\xef\xbb", "utf-8-sig", 0xEF, 0, "unexpected end of data"),
        (b"\xef\xbb\xbfab\xff", "utf-8-sig", 0xFF, 5, "invalid start byte"),
        (b"a\x00b", "utf-16-le", 0x62, 2, "truncated data"),
    ],
)
def test_read_text_names_the_absolute_offset(
    raw, encoding, byte, offset, reason, chunk, tmp_path, monkeypatch
):
    monkeypatch.setattr(vocab_module, "_CHUNK", chunk)
    assert raw[offset] == byte
    p = tmp_path / "bad.txt"
    p.write_bytes(raw)
    msg = (
        f"bad.txt is not valid {encoding}: byte {byte:#04x} at offset {offset} "
        f"\\({reason}\\)"
    )
    with pytest.raises(ValueError, match=msg):
        read_text(p, encoding)


def test_read_text_empty_after_the_bom(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes(b"\xef\xbb\xbf")
    with pytest.raises(ValueError, match="bom.txt is empty"):
        read_text(p)


def test_read_text_not_a_text_encoding(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"YWJj")
    with pytest.raises(ValueError, match="'base64' is not a text encoding"):
        read_text(p, encoding="base64")
