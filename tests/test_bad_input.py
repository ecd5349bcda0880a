# Every bad input a user can hand rnnext, in two tables: one for the Python
# API (exception type and message) and one for the command line (exit
# status and the one stderr line). Arrays handed straight to the model and
# the kernel, and random inputs, are left out.
import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

import rnnext
from rnnext import (
    Adagrad,
    CharRNN,
    Corpus,
    TrainConfig,
    Trainer,
    load_checkpoint,
    load_corpus,
    read_text,
    sample,
    set_num_threads,
)

# AddressSanitizer's shadow memory needs far more address space than the
# limit of run_cli, so under it the cases that rely on that limit are skipped.
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")
NEEDS_LIMIT = "-past-the-address-space"

B, T = 4, 10  # rows and steps of every corpus here

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
LATIN1 = "Thou caf\u00e9 of Rome\n".encode("latin-1")  # the 0xe9 is at offset 8
OTHER = "Thou 0123456789 \u20ac \u2713\n" * 30  # digits, euro and check mark


class Env(SimpleNamespace):
    def __repr__(self):
        return f"<the files in {self.d}>"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Files and objects the cases use; `e.d` is the directory they are in."""
    d = tmp_path_factory.mktemp("bad")
    text = read_text(rnnext.bundled_corpus_path())[:3000]
    files = {
        "text.txt": text.encode(),
        "short.txt": text[:20].encode(),
        "empty.txt": b"",
        "binary.bin": bytes(range(0x80, 0x100)),
        "image.png": PNG,
        "latin1.txt": LATIN1,
        "other.txt": OTHER.encode(),
        "notes.txt": b"not a checkpoint\n",
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    (d / "adir").mkdir()

    config = TrainConfig(hidden_size=8, rows=B, steps=T, epochs=1, sample_every=0)
    corpus, vocab = load_corpus(d / "text.txt", B, T, val_fraction=config.val_fraction)
    trainer = Trainer(config, corpus, vocab)
    trainer.train()
    ckpt = trainer.save(d / "c.npz")
    raw = ckpt.read_bytes()
    (d / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    spoilt = bytearray(raw)
    i = raw.index(b"W_hidden.npy") + 200  # inside that member's data
    spoilt[i : i + 8] = bytes(8 * [0x5A])
    (d / "corrupt.npz").write_bytes(bytes(spoilt))

    c = load_checkpoint(ckpt)
    return Env(
        d=d,
        vocab=vocab,
        V=len(vocab),
        ids=corpus.ids,
        model=c.model,
        ckpt=ckpt,
        ckpt_bytes=raw,
        config=config,
    )


def fresh(e):
    """The checkpoint, loaded anew (a Trainer takes over its arrays)."""
    return load_checkpoint(e.ckpt)


def resume_and_train(e, path):
    corpus, vocab = load_corpus(path, B, T, val_fraction=e.config.val_fraction)
    config = TrainConfig(**{**e.config.to_dict(), "epochs": 2})
    Trainer.resume(fresh(e), corpus, vocab, config).train(max_feeds=1)


def resume_on(e, path, vocab=None):
    """Trainer.resume of the checkpoint on the text at path, loaded with no
    vocabulary (so with its own), and given `vocab` or that one."""
    corpus, own = load_corpus(path, B, T, val_fraction=e.config.val_fraction)
    return Trainer.resume(fresh(e), corpus, vocab or own)


def sizes():
    """Each size argument given 0, -1 (ValueError) and 2.5, "3", True (TypeError)."""
    calls = {
        "Corpus-rows": ("rows", lambda e, x: Corpus(e.ids, x, T)),
        "Corpus-steps": ("steps", lambda e, x: Corpus(e.ids, B, x)),
        "load_corpus-rows": (
            "rows",
            lambda e, x: load_corpus(e.d / "text.txt", x, T),
        ),
        "CharRNN-hidden_size": ("hidden_size", lambda e, x: CharRNN(e.V, x)),
        "zero_state-rows": ("rows", lambda e, x: e.model.zero_state(x)),
        "sample-length": ("length", lambda e, x: sample(e.model, e.vocab, "Th", x)),
        "sample-num": ("num", lambda e, x: sample(e.model, e.vocab, num=x)),
    }
    for field in ("rows", "steps", "hidden_size", "epochs", "sample_length"):
        calls[f"TrainConfig-{field}"] = (
            field,
            lambda e, x, field=field: TrainConfig(**{field: x}),
        )
    for where, (name, call) in calls.items():
        for bad in (0, -1):
            yield pytest.param(
                lambda e, call=call, bad=bad: call(e, bad),
                ValueError,
                rf"^{name} must be (positive|at least 1)[;,] got {bad}$",
                id=f"{where}={bad}",
            )
        for bad in (2.5, "3", True):
            yield pytest.param(
                lambda e, call=call, bad=bad: call(e, bad),
                TypeError,
                rf"^{name} must be an int[;,] got {type(bad).__name__}$",
                id=f"{where}={bad!r}",
            )


def finite_positive(name, call):
    """A float option that must be finite and > 0, given 0, -1, NaN, inf."""
    for bad in (0.0, -1.0, math.nan, math.inf, -math.inf):
        yield pytest.param(
            lambda e, bad=bad: call(e, bad),
            ValueError,
            rf"^{name} must be a finite number > 0, got {bad}$",
            id=f"{name}={bad}-{call.__name__}",
        )


def via_sample(e, x):
    return sample(e.model, e.vocab, temperature=x)


def via_config(name):
    def via_config(e, x):
        return TrainConfig(**{name: x})

    return via_config


def via_adagrad(e, x):
    return Adagrad(CharRNN(e.V), lr=x)


def trainer_with(e, **changes):
    config = TrainConfig(**{**e.config.to_dict(), **changes})
    return Trainer(config, Corpus(e.ids, B, T, config.val_fraction), e.vocab)


def top_k(e, k):
    return sample(e.model, e.vocab, top_k=k)


NOT_A_CHECKPOINT = r"is not a usable rnnext checkpoint: not a zip archive"

API_CASES = [
    # files
    pytest.param(
        lambda e: read_text(e.d / "missing.txt"),
        FileNotFoundError,
        r"^no such file: .*missing\.txt$",
        id="read_text-missing",
    ),
    pytest.param(
        lambda e: read_text(e.d / "adir"),
        IsADirectoryError,
        r"adir is a directory; expected a text file$",
        id="read_text-directory",
    ),
    pytest.param(
        lambda e: read_text(e.d / "empty.txt"),
        ValueError,
        r"empty\.txt is empty; expected some text$",
        id="read_text-empty",
    ),
    pytest.param(
        lambda e: read_text(e.d / "binary.bin"),
        ValueError,
        r"binary\.bin is not valid utf-8: byte 0x80 at offset 0 ",
        id="read_text-binary",
    ),
    pytest.param(
        lambda e: read_text(e.d / "image.png"),
        ValueError,
        r"image\.png is not valid utf-8: byte 0x89 at offset 0 ",
        id="read_text-png",
    ),
    pytest.param(
        lambda e: read_text(e.d / "latin1.txt"),
        ValueError,
        r"latin1\.txt is not valid utf-8: byte 0xe9 at offset 8 .*latin-1",
        id="read_text-latin1-as-utf8",
    ),
    pytest.param(
        lambda e: read_text(e.d / "latin1.txt"),
        ValueError,
        r"; pass the file's encoding, e\.g\. encoding='latin-1'$",
        id="read_text-latin1-hint-in-python-terms",
    ),
    pytest.param(
        lambda e: read_text(e.d / "text.txt", encoding="klingon"),
        ValueError,
        r"^unknown text encoding 'klingon'$",
        id="read_text-unknown-encoding",
    ),
    pytest.param(
        lambda e: load_corpus(e.d / "missing.txt", B, T),
        FileNotFoundError,
        r"missing\.txt",
        id="load_corpus-missing",
    ),
    pytest.param(
        lambda e: load_corpus(e.d / "adir", B, T),
        IsADirectoryError,
        r"adir is a directory",
        id="load_corpus-directory",
    ),
    pytest.param(
        lambda e: load_corpus(e.d / "short.txt", B, T),
        ValueError,
        r"^corpus too short for rows=4, steps=10: one feed needs rows\*steps \+ 1 "
        r"= 41 training characters; got 20$",
        id="load_corpus-shorter-than-one-feed",
    ),
    pytest.param(
        lambda e: load_corpus(e.d / "text.txt", B, T, val_fraction=0.003),
        ValueError,
        r"^validation tail of 9 characters \(val_fraction=0.003\) cannot hold one "
        r"feed of one row: that needs steps \+ 1 = 11",
        id="load_corpus-tail-shorter-than-one-feed",
    ),
    # sizes
    *sizes(),
    # sampling options
    *finite_positive("temperature", via_sample),
    *finite_positive("temperature", via_config("temperature")),
    pytest.param(
        lambda e: sample(e.model, e.vocab, temperature="1"),
        TypeError,
        r"^temperature must be a number, got str$",
        id="temperature-str",
    ),
    pytest.param(
        lambda e: top_k(e, 0),
        ValueError,
        r"^top_k must be at least 1, got 0$",
        id="top_k=0",
    ),
    pytest.param(
        lambda e: top_k(e, -1),
        ValueError,
        r"^top_k must be at least 1, got -1$",
        id="top_k=-1",
    ),
    pytest.param(
        lambda e: top_k(e, e.V + 1),
        ValueError,
        r"^top_k must be at most the vocabulary size 59 .*got 60$",
        id="top_k=V+1",
    ),
    pytest.param(
        lambda e: top_k(e, 2.5),
        TypeError,
        r"^top_k must be an int, got float$",
        id="top_k=2.5",
    ),
    pytest.param(
        lambda e: sample(e.model, e.vocab, "Th\u20ac\u2713o\u20ac"),
        ValueError,
        r"^prime has characters not in the vocabulary: '\u20ac', '\u2713'$",
        id="sample-unknown-prime-characters",
    ),
    pytest.param(
        lambda e: sample(e.model, e.vocab, ""),
        ValueError,
        r"^prime must have at least one character .*got ''$",
        id="sample-empty-prime",
    ),
    pytest.param(
        lambda e: sample(e.model, e.vocab, 7),
        TypeError,
        r"^prime must be a str, got int$",
        id="sample-prime-not-str",
    ),
    pytest.param(
        lambda e: trainer_with(e, prime="Th\u20ac"),
        ValueError,
        r"^prime 'Th\u20ac': text has characters not in the vocabulary .*'\u20ac'$",
        id="Trainer-unknown-prime-characters",
    ),
    pytest.param(
        lambda e: TrainConfig(prime=""),
        ValueError,
        r"^prime must be a non-empty str, got ''$",
        id="TrainConfig-empty-prime",
    ),
    pytest.param(
        lambda e: TrainConfig(prime=7),
        TypeError,
        r"^prime must be a str, got int$",
        id="TrainConfig-prime-not-str",
    ),
    pytest.param(
        lambda e: sample(e.model, e.vocab, seed=-1),
        ValueError,
        r"^seed must be at least 0, got -1$",
        id="sample-seed=-1",
    ),
    pytest.param(
        lambda e: sample(e.model, e.vocab, seed=2**64),
        ValueError,
        r"^seed must be below 2\*\*64, got 18446744073709551616$",
        id="sample-seed=2**64",
    ),
    pytest.param(
        lambda e: sample(e.model, e.vocab, greedy="yes"),
        TypeError,
        r"^greedy must be a bool, got str$",
        id="sample-greedy-str",
    ),
    pytest.param(
        lambda e: sample(e.model, rnnext.Vocabulary("ab")),
        ValueError,
        r"^vocab has 2 characters but the model's vocab_size is 59",
        id="sample-other-vocabulary",
    ),
    # checkpoints
    pytest.param(
        lambda e: load_checkpoint(e.d / "missing.npz"),
        FileNotFoundError,
        r"^no such checkpoint: .*missing\.npz$",
        id="checkpoint-missing",
    ),
    pytest.param(
        lambda e: load_checkpoint(e.d / "adir"),
        IsADirectoryError,
        r"adir is a directory, not a checkpoint file$",
        id="checkpoint-directory",
    ),
    pytest.param(
        lambda e: load_checkpoint(e.d / "truncated.npz"),
        ValueError,
        r"truncated\.npz " + NOT_A_CHECKPOINT,
        id="checkpoint-truncated",
    ),
    pytest.param(
        lambda e: load_checkpoint(e.d / "corrupt.npz"),
        ValueError,
        r"corrupt\.npz is not a usable rnnext checkpoint: cannot read it "
        r"\(BadZipFile: Bad CRC-32 for file 'W_hidden\.npy'\)",
        id="checkpoint-corrupt",
    ),
    pytest.param(
        lambda e: load_checkpoint(e.d / "notes.txt"),
        ValueError,
        r"notes\.txt " + NOT_A_CHECKPOINT,
        id="checkpoint-text-file",
    ),
    pytest.param(
        lambda e: load_checkpoint(e.d / "empty.txt"),
        ValueError,
        r"empty\.txt " + NOT_A_CHECKPOINT,
        id="checkpoint-empty-file",
    ),
    pytest.param(
        lambda e: rnnext.save_checkpoint(e.d / "adir", fresh(e)),
        IsADirectoryError,
        r"adir is a directory",
        id="save_checkpoint-onto-a-directory",
    ),
    pytest.param(
        lambda e: rnnext.save_checkpoint(e.d / "notes.txt" / "c.npz", fresh(e)),
        FileNotFoundError,
        r"^cannot save .*notes\.txt/c\.npz: .*notes\.txt$",
        id="save_checkpoint-under-a-file",
    ),
    pytest.param(
        lambda e: load_corpus(e.d / "other.txt", B, T, vocab=fresh(e).vocab),
        ValueError,
        r"^text has characters not in the vocabulary of 59 \(12 distinct\): "
        r"'0', .*'9', '\u20ac', '\u2713'$",
        id="load_corpus-with-the-checkpoint-vocabulary",
    ),
    pytest.param(
        lambda e: resume_and_train(e, e.d / "other.txt"),
        ValueError,
        r"vocabular",
        id="Trainer.resume-corpus-of-another-vocabulary",
    ),
    pytest.param(
        lambda e: resume_on(e, e.d / "other.txt"),
        ValueError,
        r"^the corpus's vocabulary is not the checkpoint's: it has 18 characters, "
        r"the checkpoint 59; 12 not in the checkpoint \('0', .*'\u20ac', '\u2713'\); "
        r"53 only in the checkpoint \(.*\); load the corpus with "
        r"vocab=checkpoint\.vocab$",
        id="Trainer.resume-vocabulary-of-another-corpus",
    ),
    pytest.param(
        lambda e: resume_on(
            e, e.d / "text.txt", rnnext.Vocabulary(e.vocab.chars[::-1])
        ),
        ValueError,
        r"^the corpus's vocabulary is not the checkpoint's: it has 59 characters, "
        r"the checkpoint 59; the same characters in another order",
        id="Trainer.resume-vocabulary-in-another-order",
    ),
    pytest.param(
        lambda e: Trainer.resume(fresh(e), Corpus(e.ids, B, T, 0.05), e.config),
        TypeError,
        r"^vocab must be the Vocabulary the corpus was encoded with, got "
        r"TrainConfig$",
        id="Trainer.resume-without-a-vocabulary",
    ),
    pytest.param(
        lambda e: Trainer.resume(
            fresh(e),
            Corpus(e.ids, B, T, 0.05),
            e.vocab,
            TrainConfig(**{**e.config.to_dict(), "hidden_size": 9}),
        ),
        ValueError,
        r"^cannot change hidden_size when resuming \(the checkpoint has "
        r"hidden_size=8\)",
        id="Trainer.resume-other-hidden_size",
    ),
    pytest.param(
        lambda e: Trainer(e.config, Corpus(e.ids, B + 1, T, 0.05), e.vocab),
        ValueError,
        r"^corpus is laid out with rows=5, steps=10; the config has rows=4",
        id="Trainer-corpus-of-other-rows",
    ),
    pytest.param(
        lambda e: trainer_with(e).train(max_feeds=-1),
        ValueError,
        r"^max_feeds must be at least 0, got -1$",
        id="train-max_feeds=-1",
    ),
    # optimizer and the rest of the configuration
    *finite_positive("lr", via_config("lr")),
    *finite_positive("lr", via_adagrad),
    pytest.param(
        lambda e: TrainConfig(lr="0.1"),
        TypeError,
        r"^lr must be a number, got str$",
        id="lr-str",
    ),
    *(
        pytest.param(
            lambda e, bad=bad: TrainConfig(val_fraction=bad),
            ValueError,
            rf"^val_fraction must be (a finite number >= 0|< 1), got {bad}$",
            id=f"TrainConfig-val_fraction={bad}",
        )
        for bad in (-0.1, 1.0, 1.5, math.nan, math.inf)
    ),
    *(
        pytest.param(
            lambda e, bad=bad: Corpus(e.ids, B, T, bad),
            ValueError,
            rf"^val_fraction must be in \[0, 1\); got {bad}$",
            id=f"Corpus-val_fraction={bad}",
        )
        for bad in (-0.1, 1, 1.5, math.nan)
    ),
    pytest.param(
        lambda e: TrainConfig(clip=1.0, clip_norm=1.0),
        ValueError,
        r"^clip and clip_norm cannot both be set",
        id="TrainConfig-clip-and-clip_norm",
    ),
    pytest.param(
        lambda e: Adagrad(e.model, clip=1.0, clip_norm=1.0),
        ValueError,
        r"^clip and clip_norm cannot both be set",
        id="Adagrad-clip-and-clip_norm",
    ),
    pytest.param(
        lambda e: TrainConfig(clip=0.0),
        ValueError,
        r"^clip must be a finite number > 0, got 0.0$",
        id="clip=0",
    ),
    pytest.param(
        lambda e: set_num_threads(0),
        ValueError,
        r"^num_threads must be at least 1, got 0$",
        id="set_num_threads=0",
    ),
    pytest.param(
        lambda e: set_num_threads(2.5),
        TypeError,
        r"^num_threads must be an int, got float$",
        id="set_num_threads=2.5",
    ),
    pytest.param(
        lambda e: CharRNN(e.V, dtype="float16"),
        TypeError,
        r"^dtype must be float32 or float64, got float16$",
        id="CharRNN-dtype=float16",
    ),
    pytest.param(
        lambda e: CharRNN(e.V, dtype="bogus"),
        TypeError,
        r"^dtype must be float32 or float64, got 'bogus'$",
        id="CharRNN-dtype=bogus",
    ),
    pytest.param(
        lambda e: TrainConfig(dtype="float16"),
        TypeError,
        r"^dtype must be 'float32' or 'float64', got 'float16'$",
        id="TrainConfig-dtype=float16",
    ),
    pytest.param(
        lambda e: TrainConfig(dtype="bogus"),
        TypeError,
        r"^dtype must be 'float32' or 'float64', got 'bogus'$",
        id="TrainConfig-dtype=bogus",
    ),
    pytest.param(
        lambda e: TrainConfig(seed=-1),
        ValueError,
        r"^seed must be at least 0, got -1$",
        id="TrainConfig-seed=-1",
    ),
    pytest.param(
        lambda e: TrainConfig.from_dict({"hiden_size": 8}),
        ValueError,
        r"^unknown config keys \['hiden_size'\]",
        id="TrainConfig-unknown-key",
    ),
]


@pytest.mark.parametrize(("call", "error", "pattern"), API_CASES)
def test_python_api(env, call, error, pattern):
    try:
        with pytest.raises(error) as e:
            call(env)
    finally:
        set_num_threads(None)
    assert re.search(pattern, str(e.value)), (
        f"message {str(e.value)!r} does not match {pattern!r}"
    )


# The command line. Every case fails before training; the flags keep it
# quick should one not.

FAST = ["--epochs", "1", "--rows", str(B), "--steps", str(T), "--hidden-size", "8"]


def train(e, *args, corpus="text.txt"):
    return ["train", e.d / corpus, *FAST, "--sample-every", "0", *args]


def resume(e, ckpt, corpus="text.txt"):
    return ["train", e.d / corpus, "--resume", e.d / ckpt, "--epochs", "2"]


def flag_case(cmd, name, value, why):
    """`rnnext CMD NAME VALUE`, refused while parsing the flags."""
    return pytest.param(
        lambda e: (
            train(e, name, value) if cmd == "train" else ["sample", e.ckpt, name, value]
        ),
        2,
        f"^rnnext: error: argument {name}: {why}",
        id=f"{cmd}{name}={value}",
    )


CLI_CASES = [
    # files
    pytest.param(
        lambda e: train(e, corpus="missing.txt"),
        2,
        r"^rnnext: error: no such file: .*missing\.txt$",
        id="train-missing-file",
    ),
    pytest.param(
        lambda e: train(e, corpus="adir"),
        2,
        r"adir is a directory; expected a text file$",
        id="train-directory",
    ),
    pytest.param(
        lambda e: train(e, corpus="empty.txt"),
        2,
        r"empty\.txt is empty",
        id="train-empty-file",
    ),
    pytest.param(
        lambda e: train(e, corpus="binary.bin"),
        2,
        r"binary\.bin is not valid utf-8: byte 0x80 at offset 0 ",
        id="train-binary-file",
    ),
    pytest.param(
        lambda e: train(e, corpus="image.png"),
        2,
        r"image\.png is not valid utf-8: byte 0x89 at offset 0 ",
        id="train-png",
    ),
    pytest.param(
        lambda e: train(e, corpus="latin1.txt"),
        2,
        r"latin1\.txt is not valid utf-8: byte 0xe9 at offset 8 .*--encoding latin-1",
        id="train-latin1-as-utf8",
    ),
    pytest.param(
        lambda e: train(e, "--encoding", "klingon"),
        2,
        r"^rnnext: error: unknown text encoding 'klingon'$",
        id="train-unknown-encoding",
    ),
    pytest.param(
        lambda e: train(e, corpus="short.txt"),
        2,
        r"corpus too short for rows=4, steps=10: one feed needs rows\*steps \+ 1 "
        r"= 41 training characters; got 19 \(20 ids less 1 held out\)$",
        id="train-shorter-than-one-feed",
    ),
    # sizes, sampling options: argparse refuses them, one line each
    *(
        flag_case(cmd, f, bad, f"must be at least 1, got {bad}$")
        for cmd, f, bad in [
            ("train", "--rows", "0"),
            ("train", "--steps", "-1"),
            ("train", "--hidden-size", "0"),
            ("train", "--epochs", "-1"),
            ("train", "--length", "0"),
            ("sample", "--length", "-1"),
            ("sample", "--num", "0"),
            ("sample", "--top-k", "0"),
            ("sample", "--top-k", "-1"),
            ("train", "--threads", "0"),
            ("sample", "--threads", "0"),
        ]
    ),
    *(
        pytest.param(
            lambda e, cmd=cmd, f=f, n=n: (
                train(e, f, n) if cmd == "train" else ["sample", e.ckpt, f, n]
            ),
            2,
            r"^rnnext: error: .*(memory|allocate)",
            id=f"{cmd}{f}={n}",
        )
        for cmd, f, n in [
            ("train", "--hidden-size", "1000000"),  # W_hidden of 4 TB
            ("sample", "--length", "100000000000"),
            ("sample", "--num", "100000000000"),
        ]
    ),
    # sizes that fit this machine, mostly, but not the 4 GB run_cli allows
    *(
        pytest.param(
            lambda e, cmd=cmd, f=f, n=n: (
                train(e, f, n) if cmd == "train" else ["sample", e.ckpt, f, n]
            ),
            2,
            rf"^rnnext: error: not enough memory for {what}.*: it needs at least "
            rf"[\d.]+ GB",
            id=f"{cmd}{f}={n}{NEEDS_LIMIT}",
        )
        for cmd, f, n, what in [
            ("train", "--hidden-size", "30000", "training with --hidden-size 30000"),
            (
                "sample",
                "--length",
                "2000000000",
                "sampling --num 1 x --length 2000000000",
            ),
        ]
    ),
    *(
        flag_case(cmd, f, bad, f"invalid int value: '{bad}'$")
        for cmd, f, bad in [
            ("train", "--rows", "2.5"),
            ("train", "--epochs", "True"),
            ("sample", "--num", "2.5"),
        ]
    ),
    *(
        flag_case(cmd, "--temperature", bad, f"must be a finite number > 0, got {bad}$")
        for cmd, bad in [
            ("train", "0"),
            ("train", "nan"),
            ("sample", "-1"),
            ("sample", "inf"),
        ]
    ),
    pytest.param(
        lambda e: ["sample", e.ckpt, "--top-k", str(e.V + 1)],
        2,
        r"^rnnext: error: top[_-]k must be at most the vocabulary size 59 .*got 60$",
        id="sample--top-k=V+1",
    ),
    pytest.param(
        lambda e: ["sample", e.ckpt, "--prime", "Th\u20ac\u2713"],
        2,
        r"prime has characters not in the vocabulary: '\u20ac', '\u2713'$",
        id="sample-unknown-prime-characters",
    ),
    pytest.param(
        lambda e: ["sample", e.ckpt, "--prime", ""],
        2,
        r"^rnnext: error: prime must have at least one character",
        id="sample-empty-prime",
    ),
    pytest.param(
        lambda e: train(e, "--prime", "Th\u20ac"),
        2,
        r"^rnnext: error: prime 'Th\u20ac': text has characters not in the "
        r"vocabulary .*'\u20ac'$",
        id="train-unknown-prime-characters",
    ),
    pytest.param(
        lambda e: train(e, "--prime", ""),
        2,
        r"^rnnext: error: prime must be a non-empty str, got ''$",
        id="train-empty-prime",
    ),
    # checkpoints
    pytest.param(
        lambda e: resume(e, "c.npz", corpus="other.txt"),
        2,
        r"^rnnext: error: (?=.*other\.txt).*not in the vocabulary.*'\u20ac', '\u2713'",
        id="resume-corpus-of-another-vocabulary",
    ),
    pytest.param(
        lambda e: resume(e, "c.npz", corpus="other.txt"),
        2,
        r"^rnnext: error: \S*other\.txt has 12 characters not in the vocabulary of "
        r"checkpoint \S*c\.npz \(59 characters\): '0', ",
        id="resume-corpus-of-another-vocabulary-names-both-files",
    ),
    *(
        pytest.param(
            lambda e, ckpt=ckpt, cmd=cmd: (
                resume(e, ckpt) if cmd == "resume" else ["sample", e.d / ckpt]
            ),
            2,
            "^rnnext: error: " + pattern,
            id=f"{cmd}-{what}",
        )
        for cmd, ckpt, what, pattern in [
            (
                "resume",
                "truncated.npz",
                "truncated",
                r".*truncated\.npz " + NOT_A_CHECKPOINT,
            ),
            ("resume", "adir", "directory", r".*adir is a directory, not a checkpoint"),
            ("resume", "notes.txt", "text-file", r".*notes\.txt " + NOT_A_CHECKPOINT),
            (
                "sample",
                "missing.npz",
                "missing",
                r"no such checkpoint: .*missing\.npz$",
            ),
            (
                "sample",
                "truncated.npz",
                "truncated",
                r".*truncated\.npz " + NOT_A_CHECKPOINT,
            ),
            ("sample", "corrupt.npz", "corrupt", r".*corrupt\.npz is not a usable "),
            ("sample", "adir", "directory", r".*adir is a directory, not a checkpoint"),
            ("sample", "notes.txt", "text-file", r".*notes\.txt " + NOT_A_CHECKPOINT),
        ]
    ),
    pytest.param(
        lambda e: ["train", e.d / "text.txt", "--resume", e.ckpt],
        2,
        r"has already trained 1 of 1 epochs; pass --epochs N with N > 1$",
        id="resume-already-done",
    ),
    pytest.param(
        lambda e: [*resume(e, "c.npz"), "--hidden-size", "9"],
        2,
        r"^rnnext: error: cannot change hidden_size when resuming",
        id="resume-other-hidden-size",
    ),
    # optimizer and the rest
    *(
        flag_case("train", f, bad, why)
        for f, bad, why in [
            ("--lr", "0", "must be a finite number > 0, got 0$"),
            ("--lr", "nan", "must be a finite number > 0, got nan$"),
            ("--val-fraction", "-0.1", r"must be in \[0, 1\), got -0.1$"),
            ("--val-fraction", "1", r"must be in \[0, 1\), got 1$"),
        ]
    ),
    pytest.param(
        lambda e: train(e, "--clip", "1", "--clip-norm", "1"),
        2,
        r"^rnnext: error: (--)?clip and (--)?clip[_-]norm cannot both be set",
        id="train--clip-and--clip-norm",
    ),
    flag_case("train", "--dtype", "float16", r"invalid choice: 'float16' \(choose"),
    pytest.param(
        lambda e: train(e, "--out", e.d / "adir"),
        2,
        r"^rnnext: error: cannot write .*adir: it is a directory$",
        id="train--out-directory",
    ),
    pytest.param(
        lambda e: train(e, "--bogus"),
        2,
        r"^rnnext: error: unrecognized arguments: --bogus$",
        id="train-unknown-flag",
    ),
    pytest.param(
        lambda e: [],
        2,
        r"^rnnext: error: the following arguments are required: command$",
        id="no-command",
    ),
    pytest.param(
        lambda e: ["fit"],
        2,
        r"^rnnext: error: argument command: invalid choice: 'fit'",
        id="unknown-command",
    ),
]


def run_cli(args, out):
    # every run writes apart, so a case that trains changes no other case
    if args[:1] == ["train"] and "--out" not in args:
        args = [*args, "--out", out]
    # 4 GB of address space: a huge size fails to allocate on any machine
    limited = [] if UNDER_ASAN else ["sh", "-c", 'ulimit -v 4000000 && exec "$0" "$@"']
    return subprocess.run(
        [*limited, sys.executable, "-m", "rnnext", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RNNEXT_NUM_THREADS": "1"},
    )


@pytest.fixture(scope="module")
def cli_results(env):
    """Every command-line case run once, a few at a time: {id: result}."""
    out = env.d / "out"
    out.mkdir()
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            case.id: pool.submit(run_cli, case.values[0](env), out / f"{i}.npz")
            for i, case in enumerate(CLI_CASES)
            if not (UNDER_ASAN and case.id.endswith(NEEDS_LIMIT))
        }
        return {k: f.result() for k, f in futures.items()}


def test_cli_case_ids_are_distinct():
    ids = [case.id for case in CLI_CASES]
    assert len(set(ids)) == len(ids), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize(("make_args", "status", "pattern"), CLI_CASES)
def test_command_line(request, cli_results, make_args, status, pattern):
    if request.node.callspec.id not in cli_results:
        pytest.skip(
            "needs an address-space limit, which AddressSanitizer cannot run under"
        )
    r = cli_results[request.node.callspec.id]
    err = r.stderr
    assert "Traceback" not in err + r.stdout, err
    assert r.returncode == status, f"status {r.returncode}, stderr {err!r}"
    assert r.stdout == "", r.stdout
    assert err.startswith("rnnext: error: ") and err.count("\n") == 1, err
    assert re.search(pattern, err.rstrip("\n")), (
        f"stderr {err!r} does not match {pattern!r}"
    )


def test_no_case_wrote_a_checkpoint(env, cli_results):
    assert sorted(p.name for p in (env.d / "out").iterdir()) == []
    assert env.ckpt.read_bytes() == env.ckpt_bytes
