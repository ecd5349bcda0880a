# The command line: `rnnext train` and `rnnext sample`. This is the only
# part of rnnext that prints. Bad input ends with one line on stderr,
# "rnnext: error: ...", and status 2, as do sizes too big for memory; a
# diverged run with status 1; Ctrl-C during training saves a resumable
# checkpoint and ends with status 130. A stdout closed by its reader (as in
# `rnnext sample CKPT | head -c 1`) ends the command quietly with status 141,
# what a shell shows for a program killed by SIGPIPE; training first saves
# a resumable checkpoint and says so in one line on stderr.
from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import math
import os
import shlex
import signal
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

import numpy as np

import rnnext
from rnnext.checkpoint import EpochLoss, load_checkpoint
from rnnext.corpus import bundled_corpus_path, load_corpus
from rnnext.model import set_num_threads
from rnnext.sampling import sample
from rnnext.trainer import (
    EpochEnd,
    Event,
    Progress,
    Sampled,
    Saved,
    TrainConfig,
    Trainer,
    TrainingDiverged,
)
from rnnext.vocab import UndecodableText, UnknownCharacters, Vocabulary

DEFAULT_OUT = "rnnext-checkpoint.npz"
DEFAULTS = TrainConfig().to_dict()
EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130
EXIT_CLOSED_STDOUT = 141  # 128 + SIGPIPE (13), spelled out for Windows


class _Fail(Exception):
    """A user error: printed as one line, exit status 2."""


class _StdoutFailed(Exception):
    """Writing stdout failed, other than by a reader closing the pipe."""


def _print(text: str) -> None:
    """print to stdout; a closed pipe raises BrokenPipeError as ever."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        raise
    except OSError as e:  # a full disk, say
        raise _StdoutFailed(e) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, no usage block: the help is one --help away.
        self.exit(EXIT_USAGE, f"rnnext: error: {message}\n")


# Argument types; argparse turns their ValueError into "invalid ... value".


def _int_at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        n = int(text)
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {n}")
        return n

    parse.__name__ = "int"
    return parse


def _positive_float(text: str) -> float:
    x = float(text)
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return x


def _fraction(text: str) -> float:
    x = float(text)
    if not 0 <= x < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return x


_positive_float.__name__ = _fraction.__name__ = "float"

# Flags of `rnnext train` that set a TrainConfig field.
_CONFIG_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--hidden-size", "hidden_size", _int_at_least(1), "H, the state size"),
    ("--steps", "steps", _int_at_least(1), "T, characters per row in one feed"),
    ("--rows", "rows", _int_at_least(1), "B, rows of each feed"),
    ("--lr", "lr", _positive_float, "Adagrad learning rate"),
    ("--epochs", "epochs", _int_at_least(1), "epochs to train in all"),
    ("--prime", "prime", str, "text the samples start from"),
    ("--length", "sample_length", _int_at_least(1), "characters per sample"),
    ("--temperature", "temperature", _positive_float, "sampling temperature"),
    ("--val-fraction", "val_fraction", _fraction, "corpus tail held out"),
    ("--clip", "clip", _positive_float, "clip gradients to [-CLIP, CLIP]"),
    ("--clip-norm", "clip_norm", _positive_float, "clip the global grad norm"),
    ("--seed", "seed", _int_at_least(0), "seed of the weights and samples"),
    ("--sample-every", "sample_every", _int_at_least(0), "epochs between samples"),
    ("--dtype", "dtype", str, "float32 or float64"),
]


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rnnext",
        description="Train character-level tanh RNNs and sample from them.",
    )
    parser.add_argument("--version", action="version", version=rnnext.__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train a model on a text file",
        description="Train a char-RNN on a text file, saving a checkpoint "
        "after every epoch. Ctrl-C saves one at the current feed.",
    )
    train.add_argument(
        "file",
        nargs="?",
        type=Path,
        help="the text to train on (default: the bundled Shakespeare)",
    )
    for flag, field, kind, text in _CONFIG_FLAGS:
        extra: dict[str, Any] = {}
        if field == "dtype":
            extra["choices"] = ("float32", "float64")
        train.add_argument(
            flag,
            dest=field,
            type=kind,
            help=f"{text} (default: {DEFAULTS[field]})",
            **extra,
        )
    train.add_argument(
        "--encoding", default="utf-8", help="of the text file (default: utf-8)"
    )
    train.add_argument(
        "--resume",
        type=Path,
        metavar="CKPT",
        help="go on from this checkpoint; only --epochs, --lr, --clip, "
        "--clip-norm and the sampling flags may change",
    )
    train.add_argument(
        "--out",
        type=Path,
        metavar="CKPT",
        help=f"checkpoint to write (default: the --resume file, else {DEFAULT_OUT})",
    )
    train.add_argument(
        "--plot",
        type=Path,
        metavar="PNG",
        help="draw the loss curves here at the end (needs rnnext[plot])",
    )
    train.add_argument(
        "--threads", type=_int_at_least(1), metavar="N", help="kernel threads"
    )
    train.set_defaults(run=_train)

    smp = commands.add_parser(
        "sample",
        help="generate text from a checkpoint",
        description="Print text generated by a trained model.",
    )
    smp.add_argument("checkpoint", type=Path, metavar="CKPT")
    smp.add_argument("--prime", help="text to start from (default: the run's)")
    smp.add_argument(
        "--length",
        type=_int_at_least(1),
        help="characters to generate (default: the run's)",
    )
    smp.add_argument("--temperature", type=_positive_float, help="(default: the run's)")
    smp.add_argument(
        "--greedy", action="store_true", help="always take the likeliest character"
    )
    smp.add_argument(
        "--top-k", type=_int_at_least(1), metavar="K", help="draw from the K likeliest"
    )
    smp.add_argument("--seed", type=_int_at_least(0), default=0, help="(default: 0)")
    smp.add_argument(
        "--num", type=_int_at_least(1), default=1, help="texts to print (default: 1)"
    )
    smp.add_argument(
        "--threads", type=_int_at_least(1), metavar="N", help="kernel threads"
    )
    smp.set_defaults(run=_sample)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            status = _main(argv)
        finally:
            # What is still buffered fails here, not at interpreter exit.
            if sys.stdout is not None:
                sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_CLOSED_STDOUT
    return status


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        status: int = args.run(args)
        return status
    except _Fail as e:
        print(f"rnnext: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except _StdoutFailed as e:
        _silence_stdout()
        print(f"rnnext: error: cannot write to stdout: {e}", file=sys.stderr)
        return EXIT_FAILED
    except MemoryError as e:  # where no step below says what took it
        print(f"rnnext: error: not enough memory ({e})", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("rnnext: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _silence_stdout() -> None:
    """Point stdout at the null device once its reader has gone.

    Python flushes stdout at exit; into a closed pipe that would print an
    error of its own.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file: nothing to do
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def _failed(exc: Exception) -> _Fail:
    return _Fail(str(exc) or type(exc).__name__)


def _physical_memory() -> int | None:
    """Bytes of memory in this machine, None where that is not known."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def _size(n: float) -> str:
    units = ["bytes", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n, i = n / 1000, i + 1
    return f"{n:.3g} {units[i]}"


def _check_memory(what: str, needed: int) -> None:
    """Refuse a job that needs more than the machine has, before trying."""
    total = _physical_memory()
    if total is not None and needed > total:
        raise _Fail(
            f"not enough memory for {what}: it needs at least {_size(needed)}, "
            f"this machine has {_size(total)}"
        )


# rnnext train


def _train(args: argparse.Namespace) -> int:
    if args.threads is not None:
        set_num_threads(args.threads)
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise _Fail("--plot needs matplotlib: pip install 'rnnext[plot]'")
    corpus_path = args.file if args.file is not None else bundled_corpus_path()
    out: Path = args.out or args.resume or Path(DEFAULT_OUT)
    for p in (out, args.plot):
        if p is not None and not p.parent.is_dir():
            raise _Fail(f"cannot write {p}: no such directory {p.parent}")
        if p is not None and p.is_dir():
            raise _Fail(f"cannot write {p}: it is a directory")
    given = {
        field: getattr(args, field)
        for _, field, _, _ in _CONFIG_FLAGS
        if getattr(args, field) is not None
    }

    trainer = _make_trainer(args, corpus_path, given)
    c, corpus = trainer.config, trainer.corpus
    shown = " ".join(
        f"{k}={v}" for k, v in c.to_dict().items() if v is not None and k != "prime"
    )
    where = (
        f"resuming {args.resume} ({_position(trainer.epoch, trainer.feed)}) on"
        if args.resume
        else "training on"
    )
    _print(
        f"rnnext: {where} {corpus_path} ({len(corpus.ids):,} characters, "
        f"vocabulary {len(trainer.vocab)}), {corpus.feeds_per_epoch} feeds per "
        f"epoch; {shown} prime={c.prime!r}"
    )

    report = _Reporter(sys.stdout)
    started, epoch0, feed0 = time.perf_counter(), trainer.epoch, trainer.feed

    def kept() -> str:
        if report.saved is not None:
            at = _position(report.saved.epoch, report.saved.feed)
            return f"the last good checkpoint, {at}, is {out}"
        if args.resume is not None:
            at = _position(epoch0, feed0)
            return f"the last good checkpoint, {at}, is {args.resume}"
        return f"no checkpoint was saved to {out}"

    try:
        with _DeferredInterrupt() as interrupt:
            # The reporter swallows errors writing stdout and asks to stop.
            trainer.train(
                on_event=report,
                checkpoint_path=out,
                stop=lambda: interrupt.requested() or report.failed is not None,
            )
    except TrainingDiverged as e:
        report.clear()
        print(
            f"rnnext: error: {e.what} at epoch {e.epoch}, feed {e.feed}; try a "
            f"lower --lr (it is {c.lr}), or --clip or --clip-norm (say 5); "
            f"{kept()}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except MemoryError:
        report.clear()
        raise _Fail(
            f"not enough memory for {_training(c, len(trainer.vocab))}; {kept()}"
        ) from None
    except OSError as e:  # so the checkpoint could not be written
        report.clear()
        print(f"rnnext: error: cannot save {out}: {e}", file=sys.stderr)
        return EXIT_FAILED
    report.clear()
    seconds = time.perf_counter() - started

    if report.failed is not None:
        if trainer.finished:
            where = f"after the last epoch; checkpoint saved to {out}"
        else:
            again = _resume_command(args, out)
            where = (
                f"at epoch {trainer.epoch + 1}, feed {trainer.feed}/"
                f"{corpus.feeds_per_epoch}; checkpoint saved to {out}; resume "
                f"with: {again}"
            )
        if isinstance(report.failed, BrokenPipeError):
            print(f"rnnext: stdout was closed; stopped {where}", file=sys.stderr)
            return EXIT_CLOSED_STDOUT
        print(
            f"rnnext: error: cannot write to stdout ({report.failed}); stopped {where}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if args.plot is not None and trainer.history:
        _plot(args.plot, trainer.history)
        _print(f"loss curves drawn in {args.plot}")
    if not trainer.finished:
        print(
            f"rnnext: interrupted at epoch {trainer.epoch + 1}, feed "
            f"{trainer.feed}/{corpus.feeds_per_epoch} after {seconds:.1f} s; "
            f"checkpoint saved to {out}; resume with: "
            f"{_resume_command(args, out)}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    _print(f"trained {trainer.epoch - epoch0} epochs in {seconds:.1f} s")
    _print(f"checkpoint saved to {out}")
    return 0


def _resume_command(args: argparse.Namespace, out: Path) -> str:
    again = ["rnnext", "train"]
    if args.file is not None:
        again.append(str(args.file))
    if args.encoding != "utf-8":
        again += ["--encoding", args.encoding]
    again += ["--resume", str(out)]
    return shlex.join(again)


def _training(c: TrainConfig, V: int) -> str:
    """The sizes that set a training run's memory, as flags."""
    return (
        f"training with --hidden-size {c.hidden_size}, --rows {c.rows} and "
        f"--steps {c.steps} (vocabulary {V}, {c.dtype})"
    )


def _training_bytes(c: TrainConfig, V: int) -> int:
    """A lower bound on what training takes, besides the corpus."""
    s, H, B, T = np.dtype(c.dtype).itemsize, c.hidden_size, c.rows, c.steps
    params = 2 * V * H + H * H + H + V
    # the weights, their accumulators and gradients; activations of a feed
    return s * (3 * params + B * T * (2 * H + V) + 2 * B * H)


def _position(epoch: int, feed: int) -> str:
    """Where a checkpoint is, from its epochs done and feeds done since."""
    return f"after epoch {epoch}" if feed == 0 else f"at epoch {epoch + 1}, feed {feed}"


def _make_trainer(
    args: argparse.Namespace, corpus_path: Path, given: dict[str, Any]
) -> Trainer:
    """The Trainer the flags ask for; every user error becomes a _Fail."""
    try:
        if args.resume is None:
            config = TrainConfig(**given)
            vocab = None
        else:
            ckpt = load_checkpoint(args.resume)
            config = dataclasses.replace(TrainConfig.from_dict(ckpt.config), **given)
            vocab = ckpt.vocab
    except (OSError, ValueError, TypeError) as e:
        raise _failed(e) from None

    try:
        corpus, vocab = load_corpus(
            corpus_path,
            config.rows,
            config.steps,
            val_fraction=config.val_fraction,
            vocab=vocab,
            encoding=args.encoding,
        )
    except UnknownCharacters as e:  # only with the checkpoint's vocabulary
        raise _Fail(
            f"{corpus_path} has {len(e.unknown)} characters not in the "
            f"vocabulary of checkpoint {args.resume} ({e.vocab_size} "
            f"characters): {e.listing}"
        ) from None
    except UndecodableText as e:
        raise _Fail(
            f"{e.problem}; pass the file's encoding, e.g. --encoding latin-1"
        ) from None
    except MemoryError:
        raise _Fail(f"not enough memory to read {corpus_path}") from None
    except (OSError, ValueError, TypeError) as e:
        raise _failed(e) from None

    what, needed = _training(config, len(vocab)), _training_bytes(config, len(vocab))
    _check_memory(what, needed)
    try:
        if args.resume is None:
            return Trainer(config, corpus, vocab)
        trainer = Trainer.resume(ckpt, corpus, vocab, config)
    except MemoryError:
        raise _Fail(
            f"not enough memory for {what}: it needs at least {_size(needed)}"
        ) from None
    except (ValueError, TypeError) as e:
        raise _failed(e) from None
    if trainer.finished:
        raise _Fail(
            f"{args.resume} has already trained {trainer.epoch} of "
            f"{config.epochs} epochs; pass --epochs N with N > {trainer.epoch}"
        )
    return trainer


def _tokens_per_second(x: float) -> str:
    return f"{x / 1e6:.1f} M tok/s" if x >= 1e5 else f"{x / 1e3:.1f} k tok/s"


class _Reporter:
    """Prints events: a bar on a terminal, else one line per epoch."""

    BAR = 24  # characters of the bar
    REDRAW = 0.1  # seconds between redraws of the bar

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.saved: Saved | None = None
        # The error that writing `out` raised; nothing is written after it.
        self.failed: OSError | None = None
        self._bar = 0  # width of the bar on screen, 0 when none is
        self._drawn = 0.0

    def _write(self, text: str) -> None:
        if self.failed is not None:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except OSError as e:  # a reader that has gone, a full disk
            self.failed = e
            if self.out is sys.stdout:
                _silence_stdout()

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            self._progress(event)
        elif isinstance(event, EpochEnd):
            self.clear()
            e = event
            val = f"  val {e.val_loss:.4f}" if e.val_loss is not None else ""
            self._write(
                f"epoch {e.epoch}/{e.epochs}  train {e.train_loss:.4f}{val}  "
                f"bpc {e.bits_per_char:.2f}  "
                f"{_tokens_per_second(e.tokens_per_second)}\n"
            )
        elif isinstance(event, Sampled):
            self.clear()
            text = textwrap.indent(event.text, "  ")
            self._write(f"sample after epoch {event.epoch}:\n{text}\n")
        elif isinstance(event, Saved):
            self.saved = event

    def _progress(self, p: Progress) -> None:
        now = time.monotonic()
        if not self.tty or (now - self._drawn < self.REDRAW and p.feed < p.feeds):
            return
        self._drawn = now
        done = self.BAR * p.feed // p.feeds
        line = (
            f"epoch {p.epoch}/{p.epochs} [{'#' * done}{'.' * (self.BAR - done)}] "
            f"{p.feed}/{p.feeds}  loss {p.loss:.4f}  "
            f"{_tokens_per_second(p.tokens_per_second)}"
        )
        self._write("\r" + line.ljust(self._bar))
        self._bar = len(line)

    def clear(self) -> None:
        if self._bar:
            self._write("\r" + " " * self._bar + "\r")
            self._bar = 0


class _DeferredInterrupt:
    """Within it, a first Ctrl-C only sets a flag; a second one interrupts."""

    def __init__(self) -> None:
        self._requested = False
        self._previous: Any = None

    def requested(self) -> bool:
        return self._requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._requested = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self) -> _DeferredInterrupt:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C is not ours to take
            self._previous = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _plot(path: Path, history: list[EpochLoss]) -> None:
    figure = importlib.import_module("matplotlib.figure")
    ticker = importlib.import_module("matplotlib.ticker")
    fig = figure.Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    epochs = range(1, len(history) + 1)
    ax.plot(epochs, [e.train for e in history], label="training")
    if history[0].val is not None:
        ax.plot(epochs, [e.val for e in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats per character)")
    ax.legend()
    fig.savefig(path)


# rnnext sample


def _sample(args: argparse.Namespace) -> int:
    if args.threads is not None:
        set_num_threads(args.threads)
    try:
        ckpt = load_checkpoint(args.checkpoint)
    except (OSError, ValueError) as e:
        raise _failed(e) from None
    run = {**DEFAULTS, **ckpt.config}
    prime = args.prime if args.prime is not None else run["prime"]
    length = args.length or run["sample_length"]
    what = f"sampling --num {args.num} x --length {length} characters"
    needed = 0  # unknown until sample() has checked the run's settings
    if isinstance(prime, str) and type(length) is int:
        needed = _sampling_bytes(ckpt.vocab, len(prime), length, args.num)
        _check_memory(what, needed)
    try:
        texts = sample(
            ckpt.model,
            ckpt.vocab,
            prime,
            length,
            temperature=args.temperature or run["temperature"],
            greedy=args.greedy,
            top_k=args.top_k,
            seed=args.seed,
            num=args.num,
        )
        _print("\n\n".join(texts))
    except MemoryError:
        raise _Fail(
            f"not enough memory for {what}"
            + (f": it needs at least {_size(needed)}" if needed else "")
        ) from None
    except (ValueError, TypeError) as e:
        raise _failed(e) from None
    return 0


def _sampling_bytes(vocab: Vocabulary, P: int, length: int, num: int) -> int:
    """A lower bound on what sampling num texts takes."""
    top = max(map(ord, vocab.chars))
    per_char = 1 if top < 0x100 else 2 if top < 0x10000 else 4
    # int32 ids, then the texts, their join and its encoding for stdout
    return num * (4 * length + 3 * per_char * (P + length + 2))
