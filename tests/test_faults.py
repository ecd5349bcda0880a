# Faults from outside: a process killed mid-save, a run whose loss blows up,
# a disk that is full or a directory that cannot be written, an interrupt
# inside a save, a reader of stdout that has gone. Ctrl-C between feeds is
# not repeated here.
import errno
import hashlib
import inspect
import io
import math
import os
import pickle
import random
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import rnnext
from rnnext import Trainer, TrainingDiverged, load_checkpoint, save_checkpoint
from rnnext.model import PARAM_NAMES
from rnnext.trainer import Saved, TrainConfig


def rnnext_cmd(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "rnnext", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# The command line with no limit on a finite loss, so that only a NaN or an
# infinity stops a run: a run diverging fast is stopped by the limit first.
NO_LOSS_LIMIT = """\
import sys
import rnnext.trainer
rnnext.trainer.DIVERGENCE_FACTOR = float("inf")
from rnnext.cli import main
sys.exit(main(sys.argv[1:]))
"""


def rnnext_cmd_without_loss_limit(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-c", NO_LOSS_LIMIT, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(r):
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("rnnext: error: "), r.stderr
    assert r.stderr.count("\n") == 1, r.stderr


def assert_only_finite_checkpoints(directory):
    """Every file in directory is a checkpoint whose float arrays are finite."""
    for p in sorted(directory.iterdir()):
        assert p.suffix == ".npz", f"unexpected file {p.name} in {directory}"
        with np.load(p, allow_pickle=False) as z:
            for name in z.files:
                a = z[name]
                if a.dtype.kind == "f":
                    bad = int(np.size(a) - np.isfinite(a).sum())
                    assert bad == 0, f"{p.name}: {name} has {bad} non-finite values"
        load_checkpoint(p)


@pytest.fixture(scope="module")
def text():
    return rnnext.read_text(rnnext.bundled_corpus_path())[:20_000]


# A process killed while saving.


def state_digest(c):
    """A hash of what training changes in a checkpoint: position, arrays."""
    h = hashlib.sha256(f"{c.epoch} {c.feed} {c.loss_sum!r}".encode())
    for k in PARAM_NAMES:
        h.update(c.model.params[k].tobytes())
        h.update(c.optimizer.accumulators[k].tobytes())
    h.update(c.state.tobytes())
    return h.hexdigest()


# Trains one feed, logs the digest of the state it is about to save, saves
# it over the same path, and again, until killed. Goes on from the file if
# there is one. H=256 makes a save (about 0.8 MB, synced) the longer part.
SAVER = (
    """\
import hashlib, sys
from pathlib import Path
from rnnext import Trainer, TrainConfig, load_checkpoint, load_corpus
from rnnext.model import PARAM_NAMES

"""
    + inspect.getsource(state_digest)
    + """
text, path, log = map(Path, sys.argv[1:])
if path.exists():
    c = load_checkpoint(path)
    corpus, _ = load_corpus(text, 4, 10, vocab=c.vocab)
    trainer = Trainer.resume(c, corpus, c.vocab)
else:
    config = TrainConfig(
        hidden_size=256, rows=4, steps=10, epochs=10**6, val_fraction=0.0,
        sample_every=0,
    )
    corpus, vocab = load_corpus(text, 4, 10)
    trainer = Trainer(config, corpus, vocab)
with open(log, "a") as f:
    def save():
        f.write(state_digest(trainer.checkpoint()) + "\\n")
        f.flush()
        trainer.save(path)
    if not path.exists():
        save()
    print("ready", flush=True)
    while True:
        trainer.train(max_feeds=1)
        save()
"""
)


def test_a_kill_during_save_leaves_the_previous_checkpoint(tmp_path, text):
    corpus = tmp_path / "text.txt"
    corpus.write_text(text, encoding="utf-8")
    path, log = tmp_path / "c.npz", tmp_path / "saves.log"
    temp_name = re.compile(r"\.c\.npz\.rnnext-tmp-[0-9a-f]{12}")
    rng = random.Random(20240611)
    rounds, mid_save, saves = 10, 0, []
    left: set[str] = set()

    for _ in range(rounds):
        before = len(log.read_text().splitlines()) if log.exists() else 0
        p = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(corpus), str(path), str(log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        watchdog = threading.Timer(60, p.kill)
        watchdog.start()
        try:
            ready = p.stdout.readline()
            assert ready == "ready\n", p.stderr.read()
            time.sleep(rng.uniform(0.05, 0.5))
            p.send_signal(signal.SIGKILL)
            p.wait()
        finally:
            watchdog.cancel()
            p.kill()
            p.stdout.close()
            p.stderr.close()
        assert p.returncode == -signal.SIGKILL, "the saver stopped by itself"

        logged = log.read_text().splitlines()
        saves.append(len(logged) - before)
        c = load_checkpoint(path)
        for k in PARAM_NAMES:
            assert np.isfinite(c.model.params[k]).all(), k
        # the save under way when killed, or the one before it
        assert state_digest(c) in logged[-2:], (
            f"the file holds none of the last two states saved "
            f"(epoch {c.epoch}, feed {c.feed})"
        )

        others = {q.name for q in tmp_path.iterdir()} - {
            "text.txt",
            "c.npz",
            "saves.log",
        }
        assert all(temp_name.fullmatch(n) for n in others), sorted(others)
        size = path.stat().st_size
        for n in others - left:
            assert (tmp_path / n).stat().st_size <= size
        mid_save += bool(others - left)
        left = others

    print(
        f"saves per round {saves}; {mid_save} of {rounds} kills left a temp "
        f"file; {len(left)} temp files remain"
    )
    assert mid_save >= 1, "no kill landed during a save; the test proves nothing"


# A run whose loss blows up.


def write_text(path, text):
    path.write_text(text, encoding="utf-8")
    return path


SMALL = ["--rows", "4", "--steps", "10", "--sample-every", "0"]


@pytest.mark.parametrize(
    ("chars", "args"),
    [
        pytest.param(2000, ["--lr", "1e38"], id="nan-in-the-first-epoch"),
        pytest.param(
            60,
            ["--lr", "1e38", "--prime", "A", "--val-fraction", "0"],
            id="inf-after-two-good-epochs",
        ),
        pytest.param(
            60,
            ["--lr", "3e38", "--prime", "A", "--val-fraction", "0"]
            + ["--seed", "1", "--hidden-size", "2"],
            id="a-weight-overflows-at-the-end-of-an-epoch",
        ),
        pytest.param(2000, ["--lr", "1e307", "--dtype", "float64"], id="float64-inf"),
    ],
)
def test_a_diverging_run_stops_with_one_line(tmp_path, text, chars, args):
    corpus = write_text(tmp_path / "text.txt", text[:chars])
    out = tmp_path / "run"
    out.mkdir()
    r = rnnext_cmd_without_loss_limit(
        "train", corpus, "--epochs", 8, *SMALL, *args, "--out", out / "c.npz"
    )
    assert r.returncode == 1, r.stderr
    assert_one_line_error(r)
    assert re.match(
        r"rnnext: error: the loss became (nan|inf|-inf) at epoch \d+, feed \d+; "
        r"try a lower --lr",
        r.stderr,
    ), r.stderr
    assert_only_finite_checkpoints(out)
    if "no checkpoint was saved" not in r.stderr:
        assert r.stderr.endswith(f"is {out / 'c.npz'}\n"), r.stderr
        assert (out / "c.npz").exists()


def test_a_loss_that_explodes_but_stays_finite_stops_the_run(tmp_path, text):
    # lr=1e30 takes the loss to about 1e30 nats a character (ln V is 4)
    corpus = write_text(tmp_path / "text.txt", text[:2000])
    out = tmp_path / "run"
    out.mkdir()
    r = rnnext_cmd(
        "train", corpus, "--epochs", 3, *SMALL, "--lr", "1e30", "--out", out / "c.npz"
    )
    assert r.returncode != 0, f"status 0 after:\n{r.stdout}"
    assert_one_line_error(r)
    assert_only_finite_checkpoints(out)
    assert re.match(
        r"rnnext: error: the loss became [0-9.]+e\+\d+ \(above 100 ln V = "
        r"[0-9.]+\) at epoch 1, feed \d+; try a lower --lr",
        r.stderr,
    ), r.stderr
    assert r.returncode == 1


@pytest.mark.parametrize("chars", [2000, 60], ids=["val-tail", "no-val-tail"])
@pytest.mark.parametrize("lr", ["1e38", "1e30", "1e10"])
def test_no_saved_checkpoint_has_a_diverged_loss(tmp_path, text, chars, lr):
    # every checkpoint written scores below the limit on the corpus
    path = write_text(tmp_path / "text.txt", text[:chars])
    val = 0.05 if chars == 2000 else 0.0
    config = TrainConfig(
        hidden_size=8,
        rows=4,
        steps=10,
        lr=float(lr),
        epochs=6,
        prime="A",
        val_fraction=val,
        sample_every=0,
    )
    corpus, vocab = rnnext.load_corpus(path, 4, 10, val_fraction=val)
    trainer = Trainer(config, corpus, vocab)
    out = tmp_path / "run"
    out.mkdir()
    saved = []

    def keep(event):
        if isinstance(event, Saved):
            saved.append(event)

    try:
        # a stop mid-epoch (or, with one feed an epoch, at an epoch's end)
        trainer.train(checkpoint_path=out / "c.npz", on_event=keep, max_feeds=3)
        trainer.train(checkpoint_path=out / "c.npz", on_event=keep)
    except TrainingDiverged:
        pass
    assert_only_finite_checkpoints(out)
    if not saved:
        return
    c = load_checkpoint(out / "c.npz")
    assert (c.epoch, c.feed) == (saved[-1].epoch, saved[-1].feed)
    # the loss of the feed that resuming would train first
    loss, _ = c.model.evaluate(*corpus.feed(c.feed), c.state)
    assert loss <= trainer.loss_limit, f"saved at a loss of {loss}"


def test_a_weight_that_overflows_raises_training_diverged(tmp_path, text):
    config = TrainConfig(
        hidden_size=2,
        rows=4,
        steps=10,
        lr=3e38,
        epochs=8,
        val_fraction=0.0,
        prime="A",
        seed=1,
        sample_every=0,
    )
    corpus, vocab = rnnext.load_corpus(write_text(tmp_path / "t.txt", text[:60]), 4, 10)
    trainer = Trainer(config, corpus, vocab)
    path = tmp_path / "run" / "c.npz"
    path.parent.mkdir()
    with pytest.raises(TrainingDiverged, match="try a lower learning rate"):
        trainer.train(checkpoint_path=path)
    assert_only_finite_checkpoints(path.parent)


def test_a_finite_but_absurd_loss_raises_training_diverged(tmp_path, text):
    config = TrainConfig(
        hidden_size=8, rows=4, steps=10, lr=1e30, epochs=3, sample_every=0
    )
    corpus, vocab = rnnext.load_corpus(
        write_text(tmp_path / "t.txt", text[:2000]), 4, 10, val_fraction=0.05
    )
    trainer = Trainer(config, corpus, vocab)
    path = tmp_path / "run" / "c.npz"
    path.parent.mkdir()
    with pytest.raises(
        TrainingDiverged,
        match=r"^the loss became \S+ \(above 100 ln V = [\d.]+\) at epoch 1, "
        r"feed \d+; try a lower learning rate",
    ) as e:
        trainer.train(checkpoint_path=path)
    limit = 100 * math.log(len(vocab))
    assert trainer.loss_limit == limit
    assert math.isfinite(e.value.loss) and e.value.loss > limit
    assert not path.exists()
    with pytest.raises(RuntimeError, match="this run has diverged"):
        trainer.train()
    with pytest.raises(RuntimeError, match="this run has diverged"):
        trainer.save(path)
    assert not path.exists()


@pytest.mark.parametrize("call", ["train", "save"])
@pytest.mark.parametrize(
    ("where", "what"),
    [
        (lambda t: t.model.params["W_input"], "W_input"),
        (lambda t: t.optimizer.accumulators["W_softmax"], "accumulator of W_softmax"),
    ],
    ids=["weight", "accumulator"],
)
def test_a_non_finite_array_is_training_diverged(saved, where, what, call):
    # the arrays are checked themselves, not only through the next feed's loss
    t, path, before = saved
    where(t)[-1, -1] = np.inf
    with pytest.raises(TrainingDiverged, match=f"^{what} became NaN or infinite "):
        if call == "train":
            t.train(checkpoint_path=path, max_feeds=0)
        else:
            t.save(path)
    assert file_digest(path) == before
    assert os.listdir(path.parent) == ["c.npz"]
    with pytest.raises(RuntimeError, match="this run has diverged"):
        t.save(path)


def test_exceptions_with_fields_pickle():
    for e in (
        TrainingDiverged(3e30, 2, 7, TrainConfig(), "the loss became 3e+30"),
        rnnext.vocab.UnknownCharacters(["\u20ac"], 59),
        rnnext.vocab.UndecodableText("t.txt is not valid utf-8: byte 0xe9"),
        rnnext.checkpoint.NonFiniteCheckpoint("W_hidden"),
    ):
        again = pickle.loads(pickle.dumps(e))
        assert type(again) is type(e) and str(again) == str(e)
        assert vars(again) == vars(e)


# A directory that cannot be written, a disk that is full.


def small_trainer(text, **changes):
    config = TrainConfig(
        **{"hidden_size": 8, "rows": 4, "steps": 10, "epochs": 2, "val_fraction": 0.0}
        | changes
    )
    vocab = rnnext.Vocabulary.from_text(text)
    corpus = rnnext.Corpus(vocab.encode(text), config.rows, config.steps)
    return Trainer(config, corpus, vocab)


def file_digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def saved(tmp_path, text):
    """A trainer one feed past the checkpoint it saved: (trainer, path, hash)."""
    t = small_trainer(text[:2000])
    t.train(max_feeds=3)
    path = tmp_path / "c.npz"
    t.save(path)
    t.train(max_feeds=1)
    return t, path, file_digest(path)


def writes_are_refused(directory):
    probe = directory / "probe"
    try:
        probe.write_bytes(b"")
    except PermissionError:
        return True
    probe.unlink()
    return False


def test_an_unwritable_directory(saved):
    t, path, before = saved
    directory = path.parent
    directory.chmod(0o500)
    try:
        if not writes_are_refused(directory):
            pytest.skip("chmod 0o500 does not stop this user (root); see ENOSPC tests")
        with pytest.raises(PermissionError, match=re.escape(str(directory))):
            t.save(path)
    finally:
        directory.chmod(0o700)
    assert file_digest(path) == before
    assert os.listdir(directory) == ["c.npz"]


def no_space(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FillingFile(io.FileIO):
    """A file on a disk that is full after `room` bytes."""

    room = 4000  # a checkpoint of H=8 is about 13 kB

    def write(self, b):
        if self.tell() + len(b) > self.room:
            no_space()
        return super().write(b)


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_a_full_disk_leaves_the_previous_file(saved, monkeypatch, where):
    t, path, before = saved
    if where == "write":
        monkeypatch.setattr(
            os, "fdopen", lambda fd, mode: io.BufferedWriter(FillingFile(fd, "wb"))
        )
    else:
        monkeypatch.setattr(os, where, no_space)
    with pytest.raises(OSError, match="No space left on device") as e:
        t.save(path)
    monkeypatch.undo()
    assert e.value.errno == errno.ENOSPC
    assert file_digest(path) == before
    assert os.listdir(path.parent) == ["c.npz"]
    c = load_checkpoint(path)
    assert (c.epoch, c.feed) == (0, 3)


def test_saving_where_the_parent_is_a_file(saved):
    t, path, before = saved
    target = path.parent / "c.npz" / "d.npz"
    with pytest.raises(OSError, match=re.escape(str(path))):
        t.save(target)
    assert file_digest(path) == before


def test_an_interrupt_just_after_the_temp_file_is_made(saved, monkeypatch):
    # a second Ctrl-C may land anywhere in save_checkpoint
    t, path, before = saved
    real_open = os.open

    def open_then_interrupt(*args, **kwargs):
        fd = real_open(*args, **kwargs)
        os.close(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "open", open_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, t.checkpoint())
    monkeypatch.undo()
    assert file_digest(path) == before
    assert os.listdir(path.parent) == ["c.npz"]


def test_an_interrupt_while_writing_leaves_no_temp_file(saved, monkeypatch):
    t, path, before = saved

    def interrupt(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        t.save(path)
    monkeypatch.undo()
    assert file_digest(path) == before
    assert os.listdir(path.parent) == ["c.npz"]


def test_a_temp_file_of_the_same_name_is_left_alone(saved, monkeypatch):
    # another process's file: the name clashes, so that save fails, and the
    # file stays as it was
    t, path, before = saved
    monkeypatch.setattr(rnnext.checkpoint.secrets, "token_hex", lambda n: "ab" * n)
    other = path.parent / ".c.npz.rnnext-tmp-abababababab"
    other.write_bytes(b"being written")
    with pytest.raises(FileExistsError):
        t.save(path)
    assert other.read_bytes() == b"being written"
    assert file_digest(path) == before


def test_the_command_line_on_an_unwritable_out(tmp_path, text):
    blocker = write_text(tmp_path / "file", "x")
    corpus = write_text(tmp_path / "text.txt", text[:2000])
    r = rnnext_cmd("train", corpus, "--epochs", 1, *SMALL, "--out", blocker / "c.npz")
    assert r.returncode == 2
    assert_one_line_error(r)
    assert str(blocker) in r.stderr


# A reader of stdout that has gone, as in `rnnext sample CKPT | head -c 1`.


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("ckpt") / "c.npz"
    t = small_trainer(text[:2000], epochs=1)
    t.train()
    t.save(path)
    return path


def run_with_stdout_closed(*args):
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "rnnext", *map(str, args)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)


@pytest.mark.parametrize("command", ["sample", "train"])
def test_a_closed_stdout_is_no_traceback(tmp_path, text, checkpoint, command):
    if command == "sample":
        r = run_with_stdout_closed("sample", checkpoint, "--num", 3)
    else:
        corpus = write_text(tmp_path / "text.txt", text[:2000])
        out = tmp_path / "c.npz"
        r = run_with_stdout_closed("train", corpus, "--epochs", 1, *SMALL, "--out", out)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") <= 1, r.stderr
    assert "cannot save" not in r.stderr, r.stderr


def test_a_closed_stdout_ends_with_status_141_and_says_nothing(checkpoint):
    r = run_with_stdout_closed("sample", checkpoint, "--num", 3)
    assert (r.returncode, r.stderr) == (141, "")


def test_a_pipe_closed_mid_run_leaves_a_resumable_checkpoint(tmp_path, text):
    corpus = write_text(tmp_path / "text.txt", text[:2000])
    out = tmp_path / "c.npz"
    p = subprocess.Popen(
        [sys.executable, "-m", "rnnext", "train", corpus, *SMALL]
        + ["--epochs", "1000", "--out", out],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout.readline().startswith("rnnext: training on ")
        p.stdout.close()  # the reader goes, as `head -n 1` does
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 141, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    m = re.fullmatch(
        r"rnnext: stdout was closed; stopped at epoch (\d+), feed (\d+)/47; "
        r"checkpoint saved to (.*); resume with: (.*)\n",
        err,
    )
    assert m, err
    epoch, feed = int(m[1]), int(m[2])
    assert m[3] == str(out)
    c = load_checkpoint(out)
    assert (c.epoch + 1, c.feed) == (epoch, feed)
    assert epoch < 1000

    # the command it prints goes on from there
    again = shlex.split(m[4])
    assert again[:2] == ["rnnext", "train"]
    r = rnnext_cmd(*again[1:], "--epochs", epoch)
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(out).epoch == epoch


def test_a_stdout_that_cannot_be_written_is_one_line(tmp_path, text, checkpoint):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    corpus = write_text(tmp_path / "text.txt", text[:2000])
    for args in (
        ["sample", checkpoint],
        ["train", corpus, "--epochs", 1, *SMALL, "--out", tmp_path / "c.npz"],
    ):
        with open("/dev/full", "w") as full:
            r = subprocess.run(
                [sys.executable, "-m", "rnnext", *map(str, args)],
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=120,
            )
        assert r.returncode == 1, r.stderr
        assert r.stderr.startswith("rnnext: error: cannot write to stdout: "), r.stderr
        assert "No space left on device" in r.stderr
        assert r.stderr.count("\n") == 1, r.stderr
