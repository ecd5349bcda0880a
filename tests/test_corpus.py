# Corpus: the row layout against explicit index loops, targets as true next
# characters, the validation tail, memmapped ids, load_corpus, and one test
# per error. B = rows, T = steps, L = characters per row.
import tracemalloc

import numpy as np
import pytest

import rnnext.corpus as corpus_module
import rnnext.vocab as vocab_module
from rnnext import Corpus, Vocabulary, load_corpus


def expected_feed(ids, B, T, L, i):
    """Feed i by the definition: X[b, t] = ids[b*L + i*T + t], Y one later."""
    X = np.empty((B, T), dtype=ids.dtype)
    Y = np.empty((B, T), dtype=ids.dtype)
    for b in range(B):
        for t in range(T):
            X[b, t] = ids[b * L + i * T + t]
            Y[b, t] = ids[b * L + i * T + t + 1]
    return X, Y


@pytest.mark.parametrize(("n", "B", "T"), [(40, 3, 4), (2001, 200, 10), (97, 1, 7)])
def test_feeds_match_the_definition(n, B, T):
    ids = np.random.default_rng(0).integers(0, 65, n).astype(np.uint8)
    c = Corpus(ids, B, T)
    L = (n - 1) // B
    assert c.row_length == L
    assert c.feeds_per_epoch == L // T
    feeds = list(c.train_feeds())
    assert len(feeds) == c.feeds_per_epoch
    for i, (X, Y) in enumerate(feeds):
        eX, eY = expected_feed(ids, B, T, L, i)
        np.testing.assert_array_equal(X, eX)
        np.testing.assert_array_equal(Y, eY)
        np.testing.assert_array_equal(c.feed(i)[0], X)


def test_targets_are_next_characters_and_never_wrap():
    ids = np.arange(40, dtype=np.int64)
    c = Corpus(ids, rows=3, steps=4)  # L = 13, 3 feeds, 1 column dropped
    assert (c.row_length, c.feeds_per_epoch) == (13, 3)
    X, Y = c.feed(2)
    assert X.tolist() == [[8, 9, 10, 11], [21, 22, 23, 24], [34, 35, 36, 37]]
    np.testing.assert_array_equal(Y, X + 1)
    for X, Y in c.train_feeds():
        np.testing.assert_array_equal(Y, X + 1)
        assert Y.max() < len(ids)


def test_rows_continue_from_feed_to_feed():
    c = Corpus(np.arange(1000, dtype=np.uint16), rows=7, steps=5)
    feeds = list(c.train_feeds())
    for (X0, Y0), (X1, _) in zip(feeds, feeds[1:]):
        np.testing.assert_array_equal(X1[:, 0], Y0[:, -1])
        np.testing.assert_array_equal(X1[:, 0], X0[:, -1] + 1)


def test_feeds_are_contiguous_copies_in_the_ids_dtype():
    ids = np.arange(200, dtype=np.uint16)
    c = Corpus(ids, rows=1, steps=10)  # one row: the slice is contiguous
    assert c.ids is ids
    X, Y = c.feed(0)
    for a in (X, Y):
        assert a.shape == (1, 10)
        assert a.dtype == np.uint16
        assert a.flags.c_contiguous and a.flags.owndata
        assert not np.shares_memory(a, ids)
    X[:] = 0
    assert ids[0] == 0 and ids[1] == 1


def test_minimum_length_is_one_feed():
    B, T = 4, 3
    c = Corpus(np.arange(B * T + 1), B, T)
    assert c.feeds_per_epoch == 1
    with pytest.raises(ValueError, match=r"rows\*steps \+ 1 = 13 training .*got 12"):
        Corpus(np.arange(B * T), B, T)


def test_numpy_integer_sizes_are_accepted():
    c = Corpus(np.arange(100), np.int64(3), np.uint8(4))
    assert (c.rows, c.steps) == (3, 4)
    assert type(c.rows) is int


def test_memmapped_ids(tmp_path):
    path = tmp_path / "ids.npy"
    np.save(path, np.arange(5000, dtype=np.uint8) % 61)
    ids = np.load(path, mmap_mode="r")
    c = Corpus(ids, rows=20, steps=10, val_fraction=0.1)
    assert c.ids is ids
    X, Y = c.feed(c.feeds_per_epoch - 1)
    assert type(X) is np.ndarray and type(Y) is np.ndarray
    assert not np.shares_memory(X, ids)
    eX, eY = expected_feed(np.asarray(ids), 20, 10, c.row_length, c.feeds_per_epoch - 1)
    np.testing.assert_array_equal(X, eX)
    np.testing.assert_array_equal(Y, eY)
    assert all(type(X) is np.ndarray for X, _ in c.validation_feeds())


# The validation tail.


def test_validation_tail_is_laid_out_like_training():
    ids = np.arange(1000, dtype=np.int32)
    c = Corpus(ids, rows=4, steps=5, val_fraction=0.25)
    assert (c.n_train, c.n_val) == (750, 250)
    assert c.row_length == 749 // 4
    assert c.validation_rows == 4
    L_val = 249 // 4
    assert c.validation_feeds_per_epoch == L_val // 5
    feeds = list(c.validation_feeds())
    assert len(feeds) == c.validation_feeds_per_epoch
    tail = ids[750:]
    for i, (X, Y) in enumerate(feeds):
        eX, eY = expected_feed(tail, 4, 5, L_val, i)
        np.testing.assert_array_equal(X, eX)
        np.testing.assert_array_equal(Y, eY)


def test_training_and_validation_do_not_overlap():
    ids = np.arange(1000, dtype=np.int32)
    c = Corpus(ids, rows=4, steps=5, val_fraction=0.25)
    train = np.concatenate([np.ravel([X, Y]) for X, Y in c.train_feeds()])
    val = np.concatenate([np.ravel([X, Y]) for X, Y in c.validation_feeds()])
    assert train.max() < c.n_train <= val.min()


def test_short_tail_uses_fewer_rows():
    c = Corpus(np.arange(1000), rows=50, steps=4, val_fraction=0.02)
    assert c.n_val == 20
    assert c.validation_rows == (20 - 1) // 4
    feeds = list(c.validation_feeds())
    assert len(feeds) == 1
    assert feeds[0][0].shape == (4, 4)


def test_no_validation_by_default():
    c = Corpus(np.arange(100), rows=2, steps=3)
    assert (c.val_fraction, c.n_val, c.validation_rows) == (0.0, 0, 0)
    assert c.validation_feeds_per_epoch == 0
    assert list(c.validation_feeds()) == []


def test_val_fraction_can_be_set():
    c = Corpus(np.arange(1000), rows=4, steps=5)
    before = c.feeds_per_epoch
    c.val_fraction = 0.5
    assert c.n_train == 500
    assert c.feeds_per_epoch < before
    assert len(list(c.validation_feeds())) == c.validation_feeds_per_epoch > 0
    c.val_fraction = 0
    assert c.feeds_per_epoch == before


def test_batches_are_the_feeds():
    c = Corpus(np.arange(1000), rows=4, steps=5, val_fraction=0.2)
    for a, b in zip(c.train_batches(), c.train_feeds()):
        np.testing.assert_array_equal(a[0], b[0])
    assert len(list(c.validation_batches())) == c.validation_feeds_per_epoch


# load_corpus


def test_load_corpus_builds_vocab_from_the_whole_text(tmp_path):
    text = "to be or not to be\r\n" * 20 + "QZ"  # 'Q', 'Z' only in the tail
    p = tmp_path / "t.txt"
    p.write_bytes(text.encode())
    c, v = load_corpus(p, rows=2, steps=5, val_fraction=0.1)
    normalised = text.replace("\r\n", "\n")
    assert v == Vocabulary.from_text(normalised)
    assert "Q" in v.chars and "\r" not in v.chars
    assert c.ids.dtype == np.uint8
    assert v.decode(c.ids) == normalised
    assert (c.rows, c.steps, c.val_fraction) == (2, 5, 0.1)


def test_load_corpus_with_a_given_vocab(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("abcabcabcabc")
    v = Vocabulary("cba")
    c, w = load_corpus(p, 1, 3, vocab=v)
    assert w is v
    assert c.ids.tolist() == [2, 1, 0] * 4
    with pytest.raises(
        ValueError, match=r"not in the vocabulary of 3 \(1 distinct\): 'c'"
    ):
        load_corpus(p, 1, 3, vocab=Vocabulary("abd"))


def test_load_corpus_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_corpus(tmp_path / "missing.txt", 1, 1)


# Errors, one test per check.


def test_ids_must_be_an_array():
    with pytest.raises(TypeError, match="ids must be a numpy integer array; got list"):
        Corpus([1, 2, 3], 1, 1)


def test_ids_must_be_integers():
    with pytest.raises(TypeError, match="ids must be integers; got dtype float32"):
        Corpus(np.zeros(100, dtype=np.float32), 1, 1)


def test_ids_must_not_be_bools():
    with pytest.raises(TypeError, match="got dtype bool"):
        Corpus(np.zeros(100, dtype=bool), 1, 1)


def test_ids_must_be_1d():
    with pytest.raises(ValueError, match=r"ids must be 1-D; got shape \(10, 10\)"):
        Corpus(np.zeros((10, 10), dtype=np.uint8), 1, 1)


@pytest.mark.parametrize("name", ["rows", "steps"])
@pytest.mark.parametrize("bad", [2.0, "2", True, None])
def test_sizes_must_be_ints(name, bad):
    sizes = {"rows": 2, "steps": 2, name: bad}
    with pytest.raises(TypeError, match=f"{name} must be an int; got"):
        Corpus(np.arange(100), **sizes)


@pytest.mark.parametrize("name", ["rows", "steps"])
@pytest.mark.parametrize("bad", [0, -3])
def test_sizes_must_be_positive(name, bad):
    sizes = {"rows": 2, "steps": 2, name: bad}
    with pytest.raises(ValueError, match=f"{name} must be positive; got {bad}"):
        Corpus(np.arange(100), **sizes)


def test_too_short_for_the_shape():
    msg = (
        r"corpus too short for rows=200, steps=10: one feed needs "
        r"rows\*steps \+ 1 = 2001 training characters; got 1500$"
    )
    with pytest.raises(ValueError, match=msg):
        Corpus(np.arange(1500), rows=200, steps=10)


def test_too_short_after_holding_out():
    msg = r"2001 training characters; got 1800 \(2000 ids less 200 held out\)"
    with pytest.raises(ValueError, match=msg):
        Corpus(np.arange(2000), rows=200, steps=10, val_fraction=0.1)


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_val_fraction_range(bad):
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        Corpus(np.arange(100), 2, 2, val_fraction=bad)


@pytest.mark.parametrize("bad", ["0.1", None, True])
def test_val_fraction_type(bad):
    with pytest.raises(TypeError, match="val_fraction must be a number; got"):
        Corpus(np.arange(100), 2, 2, val_fraction=bad)


@pytest.mark.parametrize("f", [0.05, 0.001])  # a 5-character tail; an empty one
def test_tail_too_short_for_one_feed(f):
    msg = "cannot hold one feed of one row: that needs steps \\+ 1 = 6"
    with pytest.raises(ValueError, match=msg):
        Corpus(np.arange(100), rows=2, steps=5, val_fraction=f)


def test_bad_val_fraction_leaves_the_corpus_unchanged():
    c = Corpus(np.arange(100), rows=2, steps=5, val_fraction=0.2)
    with pytest.raises(ValueError, match="cannot hold one feed"):
        c.val_fraction = 0.05
    assert (c.val_fraction, c.n_val, c.validation_rows) == (0.2, 20, 2)


@pytest.mark.parametrize("bad", [-1, 3])
def test_feed_index_range(bad):
    c = Corpus(np.arange(40), rows=3, steps=4)
    with pytest.raises(IndexError, match=rf"feed index must be in \[0, 3\); got {bad}"):
        c.feed(bad)


def test_feed_index_type():
    c = Corpus(np.arange(40), rows=3, steps=4)
    with pytest.raises(TypeError, match="feed index must be an int; got float"):
        c.feed(1.0)


@pytest.mark.parametrize(("n", "B", "T"), [(40, 3, 4), (5001, 200, 10), (97, 1, 7)])
def test_train_rows_is_a_view_holding_every_feed(n, B, T):
    ids = np.random.default_rng(1).integers(0, 65, n).astype(np.uint8)
    c = Corpus(ids, B, T, val_fraction=0.2 if n > 100 else 0.0)
    rows = c.train_rows()
    assert rows.shape == (B, c.row_length + 1)
    assert np.shares_memory(rows, ids) and not rows.flags.writeable
    for i, (X, Y) in enumerate(c.train_feeds()):
        np.testing.assert_array_equal(rows[:, i * T : (i + 1) * T], X)
        np.testing.assert_array_equal(rows[:, i * T + 1 : (i + 1) * T + 1], Y)
    assert rows.max(initial=0) <= ids[: c.n_train].max()


# load_corpus reads the file twice in chunks of vocab_module._CHUNK bytes:
# once for the characters, once for the ids. Against the oracle, the whole
# file decoded at once and encoded by a dict, with chunks of a few bytes.


def read_whole(path, encoding="utf-8"):
    """(ids, chars) by decoding the whole file and a dict lookup."""
    raw = path.read_bytes()
    text = raw.decode(encoding).removeprefix("\ufeff").replace("\r\n", "\n")
    chars = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(chars)}
    return [index[c] for c in text], chars


TRICKY = [
    ("a\r\nb\r\r\n\r\n\rc\r\n\r" * 3, "utf-8"),
    ("Ophélie, 日本, \U0001f3ad!\r\n" * 3, "utf-8"),
    ("\ufeffWhat, ho!\r\nWho's there?\r\n", "utf-8"),
    ("Ophélie\r\nÿ\r\n" * 3, "latin-1"),
    ("\ufeffOphélie\r\n\U0001f3ad\r" * 3, "utf-16"),
    ("日本語\r\nです\r" * 3, "shift_jis"),
    ("".join(chr(i) for i in range(32, 700)) * 2, "utf-8"),  # uint16 ids
]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
@pytest.mark.parametrize(("text", "encoding"), TRICKY)
def test_load_corpus_in_chunks_is_the_whole_text(
    text, encoding, chunk, tmp_path, monkeypatch
):
    monkeypatch.setattr(vocab_module, "_CHUNK", chunk)
    p = tmp_path / "t.txt"
    p.write_bytes(text.encode(encoding))
    ids, chars = read_whole(p, encoding)
    c, v = load_corpus(p, 2, 3, val_fraction=0.25, encoding=encoding)
    assert v.chars == chars
    assert c.ids.dtype == v.dtype and c.ids.tolist() == ids
    assert (c.rows, c.steps, c.val_fraction) == (2, 3, 0.25)

    given = Vocabulary(chars[::-1])
    c, w = load_corpus(p, 2, 3, vocab=given, encoding=encoding)
    assert w is given
    assert c.ids.tolist() == [len(chars) - 1 - i for i in ids]


def test_load_corpus_lists_unknown_characters_of_every_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(vocab_module, "_CHUNK", 4)
    p = tmp_path / "t.txt"
    p.write_text("abab" * 10 + "c" + "ab" * 10 + "日d")
    msg = r"not in the vocabulary of 2 \(3 distinct\): 'c', 'd', '日'$"
    with pytest.raises(ValueError, match=msg):
        load_corpus(p, 1, 3, vocab=Vocabulary("ab"))


def test_load_corpus_names_the_undecodable_byte(tmp_path, monkeypatch):
    monkeypatch.setattr(vocab_module, "_CHUNK", 3)
    p = tmp_path / "bad.txt"
    p.write_bytes(b"abcdefg\xc3x")
    msg = r"bad.txt is not valid utf-8: byte 0xc3 at offset 7 \(invalid cont"
    with pytest.raises(ValueError, match=msg):
        load_corpus(p, 1, 1)


def test_load_corpus_empty_file(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_bytes(b"\xef\xbb\xbf")
    with pytest.raises(ValueError, match="empty.txt is empty; expected some text"):
        load_corpus(p, 1, 1)


def test_load_corpus_checks_the_text_before_the_layout(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"abc\xff")
    with pytest.raises(ValueError, match="not valid utf-8"):
        load_corpus(p, 100, 100)
    p.write_bytes(b"abc")
    with pytest.raises(ValueError, match=r"not in the vocabulary of 1 \(2 dist"):
        load_corpus(p, 100, 100, vocab=Vocabulary("a"))
    with pytest.raises(ValueError, match="corpus too short for rows=100"):
        load_corpus(p, 100, 100)


def test_load_corpus_file_changed_between_passes(tmp_path, monkeypatch):
    p = tmp_path / "t.txt"
    p.write_text("abcabc")
    reads = []

    def growing(path, encoding):
        reads.append(path)
        yield "abcabc" + "a" * (len(reads) - 1)

    monkeypatch.setattr(corpus_module, "_read_pieces", growing)
    with pytest.raises(ValueError, match="t.txt changed while it was read"):
        load_corpus(p, 1, 1)
    assert len(reads) == 2


def test_load_corpus_holds_little_more_than_the_ids(tmp_path):
    p = tmp_path / "big.txt"
    p.write_text("to be, or not to be: that is the question\n" * 200_000)
    tracemalloc.start()
    try:
        c, _ = load_corpus(p, 200, 10, val_fraction=0.05)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    extra, chunk = peak - c.ids.nbytes, vocab_module._CHUNK
    assert c.ids.nbytes == 8_400_000
    assert extra < 8 * chunk, f"{extra} bytes besides the ids; chunk {chunk}"
