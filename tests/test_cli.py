# The command line: `python -m rnnext train` and `sample` end to end in a
# subprocess (output, checkpoint, resume, Ctrl-C), and every bad input
# ending with one "rnnext: error:" line, status 2 and no traceback.
import importlib.util
import io
import math
import re
import shlex
import signal
import subprocess
import sys

import pytest

import rnnext
from rnnext.checkpoint import load_checkpoint
from rnnext.cli import _Reporter, main
from rnnext.trainer import EpochEnd, Progress

SMALL = ["--rows", "8", "--steps", "10", "--sample-every", "1", "--seed", "3"]


def rnnext_cmd(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "rnnext", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_main(capsys, *args):
    """main() in this process: (status, stdout, stderr)."""
    try:
        status = main([str(a) for a in args])
    except SystemExit as e:  # argparse's own exits
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    text = rnnext.read_text(rnnext.bundled_corpus_path())[:20_000]
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(corpus_file, tmp_path_factory):
    """A two-epoch run of the command line: (result, checkpoint path)."""
    ckpt = tmp_path_factory.mktemp("run") / "c.npz"
    r = rnnext_cmd("train", corpus_file, "--epochs", 2, *SMALL, "--out", ckpt)
    return r, ckpt


EPOCH_LINE = (
    r"epoch {}/2  train \d\.\d{{4}}  val \d\.\d{{4}}  bpc \d\.\d\d  [\d.]+ [Mk] tok/s"
)


def test_train_end_to_end(trained, corpus_file):
    r, ckpt = trained
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"rnnext: training on {corpus_file} (20,000 characters")
    assert "hidden_size=16 steps=10 rows=8" in lines[0]
    assert re.fullmatch(EPOCH_LINE.format(1), lines[1])
    assert lines[2] == "sample after epoch 1:"
    assert lines[3].startswith("  Thou")
    assert any(re.fullmatch(EPOCH_LINE.format(2), line) for line in lines)
    assert re.fullmatch(r"trained 2 epochs in [\d.]+ s", lines[-2])
    assert lines[-1] == f"checkpoint saved to {ckpt}"
    c = load_checkpoint(ckpt)
    assert (c.epoch, c.feed, c.config["rows"]) == (2, 0, 8)


def test_sample_is_reproducible(trained):
    _, ckpt = trained
    args = ("sample", ckpt, "--num", 2, "--seed", 5, "--temperature", 0.8)
    a, b = rnnext_cmd(*args), rnnext_cmd(*args)
    assert a.returncode == 0 and a.stderr == "", a.stderr
    assert a.stdout == b.stdout
    c = load_checkpoint(ckpt)
    texts = rnnext.sample(c.model, c.vocab, "Thou", 50, temperature=0.8, seed=5, num=2)
    assert a.stdout == "\n\n".join(texts) + "\n"
    c = rnnext_cmd(*args[:-1], 0.9)
    assert c.stdout != a.stdout


def test_sample_options(trained, capsys):
    _, ckpt = trained
    status, out, _ = run_main(capsys, "sample", ckpt, "--prime", "The", "--greedy")
    assert status == 0
    assert out.startswith("The") and len(out) == len("The") + 50 + 1
    status, out, _ = run_main(
        capsys, "sample", ckpt, "--length", 5, "--top-k", 1, "--seed", 9
    )
    assert status == 0 and len(out) == len("Thou") + 5 + 1


def test_resume_goes_on_in_the_same_file(trained, corpus_file, tmp_path, capsys):
    _, ckpt = trained
    copy = tmp_path / "c.npz"
    copy.write_bytes(ckpt.read_bytes())
    status, out, err = run_main(
        capsys, "train", corpus_file, "--resume", copy, "--epochs", 3
    )
    assert status == 0, err
    assert out.splitlines()[0].startswith(f"rnnext: resuming {copy} (after epoch 2)")
    assert "epoch 3/3" in out and out.endswith(f"checkpoint saved to {copy}\n")
    assert load_checkpoint(copy).epoch == 3


def test_resume_when_already_done_says_what_to_pass(trained, corpus_file, capsys):
    _, ckpt = trained
    status, _, err = run_main(capsys, "train", corpus_file, "--resume", ckpt)
    assert status == 2
    assert err == (
        f"rnnext: error: {ckpt} has already trained 2 of 2 epochs; pass "
        f"--epochs N with N > 2\n"
    )


def test_ctrl_c_saves_a_resumable_checkpoint(corpus_file, tmp_path):
    ckpt = tmp_path / "c.npz"
    args = ["train", corpus_file, "--epochs", 10_000, *SMALL, "--out", ckpt]
    p = subprocess.Popen(
        [sys.executable, "-m", "rnnext", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in p.stdout:
            if line.startswith("epoch 2/"):
                break
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert err.count("\n") == 1 and "Traceback" not in err
    m = re.fullmatch(
        r"rnnext: interrupted at epoch (\d+), feed (\d+)/\d+ after [\d.]+ s; "
        r"checkpoint saved to (.*); resume with: (.*)\n",
        err,
    )
    assert m, err
    epoch, feed = int(m[1]), int(m[2])
    assert m[3] == str(ckpt)
    c = load_checkpoint(ckpt)
    assert (c.epoch, c.feed) == (epoch - 1, feed) and c.epoch >= 2

    again = shlex.split(m[4])
    assert again[:2] == ["rnnext", "train"]
    r = rnnext_cmd(*again[1:], "--epochs", epoch, timeout=60)
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(ckpt).epoch == epoch


@pytest.mark.parametrize("limit", [True, False], ids=["loss-limit", "nan-only"])
def test_a_diverging_run_keeps_the_last_good_checkpoint(
    corpus_file, tmp_path, capsys, monkeypatch, limit
):
    ckpt = tmp_path / "c.npz"
    args = ("train", corpus_file, *SMALL, "--out", ckpt)
    assert run_main(capsys, *args, "--epochs", 1)[0] == 0
    good = ckpt.read_bytes()
    # 1e5 makes the loss huge but keeps it far from overflow; at 1e38 the
    # sums overflow and the loss becomes NaN
    lr = 1e5 if limit else 1e38
    if not limit:  # then only a NaN or an infinity stops the run
        monkeypatch.setattr(rnnext.trainer, "DIVERGENCE_FACTOR", math.inf)
    status, _, err = run_main(
        capsys, *args, "--resume", ckpt, "--epochs", 3, "--lr", lr
    )
    assert status == 1
    assert err.count("\n") == 1
    if limit:
        assert re.match(
            r"rnnext: error: the loss became \S+ \(above 100 ln V = [\d.]+\) at "
            r"epoch 2, feed ",
            err,
        ), err
    else:
        assert err.startswith("rnnext: error: the loss became nan at epoch 2, feed ")
    assert f"try a lower --lr (it is {lr}), or --clip or --clip-norm" in err
    assert err.endswith(f"the last good checkpoint, after epoch 1, is {ckpt}\n")
    assert ckpt.read_bytes() == good


def test_a_run_that_diverges_at_once_says_nothing_was_saved(
    corpus_file, tmp_path, capsys
):
    ckpt = tmp_path / "c.npz"
    status, _, err = run_main(
        capsys, "train", corpus_file, *SMALL, "--lr", 1e38, "--out", ckpt
    )
    assert status == 1 and err.endswith(f"no checkpoint was saved to {ckpt}\n")
    assert not ckpt.exists()


@pytest.mark.parametrize("command", [[], ["train"], ["sample"]])
def test_help(command):
    r = rnnext_cmd(*command, "--help")
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("usage: rnnext")
    if command == ["train"]:
        for flag in ("--hidden-size", "--clip-norm", "--resume", "--plot", "--threads"):
            assert flag in r.stdout


def test_errors_in_a_subprocess_are_one_line(tmp_path):
    for args, message in [
        (["train", tmp_path / "none.txt"], "no such file"),
        (["sample", tmp_path / "none.npz"], "no such checkpoint"),
        (["train", "--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    ]:
        r = rnnext_cmd(*args)
        assert r.returncode == 2
        assert r.stdout == ""
        assert r.stderr.startswith("rnnext: error: ") and message in r.stderr
        assert r.stderr.count("\n") == 1, r.stderr


def write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d: ["train", d], "is a directory"),
        (lambda d: ["train", write(d / "e.txt", b"")], "is empty"),
        (lambda d: ["train", write(d / "b.txt", b"ab\xffcd")], "is not valid utf-8"),
        (lambda d: ["train", write(d / "s.txt", b"abc")], "corpus too short"),
        (lambda d: ["train", "--encoding", "klingon"], "unknown text encoding"),
        (lambda d: ["train", "--rows", "0"], "--rows: must be at least 1, got 0"),
        (lambda d: ["train", "--epochs", "1.5"], "--epochs: invalid int value"),
        (lambda d: ["train", "--temperature", "0"], "--temperature: must be a fin"),
        (lambda d: ["train", "--lr", "nan"], "--lr: must be a finite number > 0"),
        (lambda d: ["train", "--val-fraction", "1"], "must be in [0, 1), got 1"),
        (lambda d: ["train", "--dtype", "float16"], "invalid choice: 'float16'"),
        (lambda d: ["train", "--clip", "1", "--clip-norm", "1"], "cannot both be"),
        (lambda d: ["train", "--prime", "Thou\u20ac"], "prime 'Thou\u20ac': "),
        (lambda d: ["train", "--out", d / "no" / "c.npz"], "no such directory"),
        (lambda d: ["train", "--out", d], "it is a directory"),
        (lambda d: ["train", "--threads", "0"], "--threads: must be at least 1"),
        (lambda d: ["sample", write(d / "c.npz", b"PK\3\4junk")], "not a usable"),
        (lambda d: ["sample", d], "is a directory"),
        (lambda d: [], "the following arguments are required: command"),
        (lambda d: ["train", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, make_args, message):
    status, out, err = run_main(capsys, *make_args(tmp_path))
    assert status == 2
    assert out == ""
    assert err.startswith("rnnext: error: ") and err.count("\n") == 1, err
    assert message in err


def test_sample_errors(trained, capsys):
    _, ckpt = trained
    for args, message in [
        (["--prime", "\u20ac"], "prime has characters not in the vocabulary"),
        (["--top-k", "1000"], "top_k must be at most the vocabulary size"),
        (["--temperature", "-1"], "--temperature: must be a finite number > 0"),
    ]:
        status, out, err = run_main(capsys, "sample", ckpt, *args)
        assert status == 2 and out == ""
        assert err.startswith("rnnext: error: ") and message in err, err


def test_resume_cannot_change_the_shape(trained, corpus_file, capsys):
    _, ckpt = trained
    status, _, err = run_main(
        capsys, "train", corpus_file, "--resume", ckpt, "--hidden-size", 8
    )
    assert status == 2 and "cannot change hidden_size when resuming" in err


@pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is not None, reason="matplotlib present"
)
def test_plot_without_matplotlib_says_what_to_install(capsys):
    status, _, err = run_main(capsys, "train", "--plot", "loss.png")
    assert status == 2
    assert err == "rnnext: error: --plot needs matplotlib: pip install 'rnnext[plot]'\n"


def test_plot_draws_the_loss_curves(corpus_file, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "loss.png"
    args = ("train", corpus_file, "--epochs", 2, *SMALL, "--out", tmp_path / "c.npz")
    status, out, err = run_main(capsys, *args, "--plot", png)
    assert status == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"loss curves drawn in {png}" in out


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_bar_and_then_the_epoch_line():
    out = Terminal()
    report = _Reporter(out)
    report(Progress(1, 3, 50, 100, 2.5, 9.1e6))
    report(Progress(1, 3, 100, 100, 2.25, 9.2e6))
    report(EpochEnd(1, 3, 2.25, None, 3.25, 9.2e6, 1.0))
    screen = out.getvalue()
    bar = "\repoch 1/3 [" + "#" * 24 + "] 100/100  loss 2.2500  9.2 M tok/s"
    assert "\repoch 1/3 [" + "#" * 12 + "." * 12 + "] 50/100  loss 2.5000" in screen
    assert bar in screen
    assert screen.endswith(
        "\r" + " " * (len(bar) - 1) + "\r"
        "epoch 1/3  train 2.2500  bpc 3.25  9.2 M tok/s\n"
    )


def test_a_pipe_gets_no_bar():
    out = io.StringIO()
    report = _Reporter(out)
    report(Progress(1, 3, 50, 100, 2.5, 9.1e6))
    report(EpochEnd(1, 3, 2.25, 2.5, 3.6, 9.2e4, 1.0))
    assert out.getvalue() == (
        "epoch 1/3  train 2.2500  val 2.5000  bpc 3.60  92.0 k tok/s\n"
    )


def test_a_failed_save_is_one_line(corpus_file, tmp_path, capsys, monkeypatch):
    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", fail)
    out = tmp_path / "c.npz"
    status, _, err = run_main(capsys, "train", corpus_file, *SMALL, "--out", out)
    assert status == 1
    assert (
        err == f"rnnext: error: cannot save {out}: [Errno 28] No space left on device\n"
    )
    assert list(tmp_path.iterdir()) == []
