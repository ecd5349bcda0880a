# Vocabulary and read_text: round trips, id dtypes, checkpoint arrays,
# pickling, and one test per error they raise.
import copy
import pickle

import numpy as np
import pytest

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
