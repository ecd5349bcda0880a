# Checkpoints: one .npz file holding everything a training run needs to go on
# exactly where it stopped. Plain arrays only (loaded with allow_pickle=False),
# written atomically, and byte-identical for identical states. Which corpus
# was trained on is not recorded: the caller passes it again.
#
# A save writes `.NAME.rnnext-tmp-` and 12 hex digits beside NAME, then
# renames it over NAME. A process killed mid-save leaves that file behind
# (one per killed save); nothing reads it and it may be deleted. Saves do
# not remove such files, since another process may be writing one.
#
# B = rows, H = hidden, V = vocabulary, E = epochs done.
#
# Members (format version 1):
#   format, version          "rnnext-checkpoint", 1
#   vocab                    (V,) uint32 code points
#   config                   JSON (uint8): the training configuration, with at
#                            least hidden_size, rows and dtype
#   W_input ... b_softmax    the five parameters, in the config's dtype
#   accum_W_input ...        their Adagrad accumulators
#   optimizer                JSON: lr, eps, initial_accumulator, clip, clip_norm
#   epoch, feed, loss_sum    epochs done, feeds done in the next epoch, and the
#                            sum of those feeds' training losses (float64)
#   state                    (B, H) hidden state carried into the next feed
#   rng                      JSON: bit_generator.state of the sampling Generator
#   history_train            (E,) float64 mean training loss of each epoch
#   history_val              (E,) float64 validation loss, or (0,) without one
from __future__ import annotations

import json
import os
import secrets
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from rnnext.model import DTYPES, PARAM_NAMES, Adagrad, CharRNN
from rnnext.vocab import Vocabulary

FORMAT_TAG = "rnnext-checkpoint"
FORMAT_VERSION = 1

# In the name of the temporary file a save writes, before its random part.
TEMP_MARK = ".rnnext-tmp-"

# Bit generators whose state is plain integers, so JSON holds it exactly.
_BIT_GENERATORS = ("PCG64", "PCG64DXSM")

# np.savez stamps each member with the current time; this fixed stamp (the
# earliest a zip file can hold) makes equal states give equal bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

FloatArray = npt.NDArray[Any]


class EpochLoss(NamedTuple):
    """Mean losses (nats per character) of one epoch; val is None without one."""

    train: float
    val: float | None


@dataclass
class Checkpoint:
    """A training run between two feeds.

    ``feed`` feeds of epoch ``epoch + 1`` are done (0 at an epoch boundary),
    their training losses summing to ``loss_sum``; ``state`` is the hidden
    state they carried out. ``rng`` is the Generator that seeds samples.
    """

    model: CharRNN
    optimizer: Adagrad
    vocab: Vocabulary
    config: dict[str, Any]
    epoch: int = 0
    feed: int = 0
    state: FloatArray | None = None  # zeros of (rows, H) when None
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    history: list[EpochLoss] = field(default_factory=list)
    loss_sum: float = 0.0


def save_checkpoint(path: str | os.PathLike[str], checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically; returns the path.

    The file is written under a temporary name in the same directory, synced,
    then renamed over ``path``: a crash or an error leaves any previous file
    whole. Refuses (NonFiniteCheckpoint, a ValueError) a state holding NaN or
    infinity, and (IsADirectoryError) a path that is a directory.
    """
    target = Path(path)
    members = _members(checkpoint)
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"cannot save {target}: no such directory {target.parent}"
        )
    if target.is_dir():
        raise _is_a_directory(target)

    # Created like any new file (the umask applies), under a name no one has.
    tmp = target.with_name(f".{target.name}{TEMP_MARK}{secrets.token_hex(6)}")
    ours = True  # whether a file named tmp is this call's to remove
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            ours = False
            raise
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, members)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, target)
        except IsADirectoryError:  # made a directory since the check above
            raise _is_a_directory(target) from None
    except BaseException:
        # Also an interrupt that lands once os.open has made the file.
        if ours:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise
    _sync_directory(target.parent)
    return target


def _is_a_directory(target: Path) -> IsADirectoryError:
    return IsADirectoryError(
        f"{target} is a directory; cannot save a checkpoint over it"
    )


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``.

    A missing file raises FileNotFoundError; a file that is not a readable
    checkpoint of a version this rnnext knows raises ValueError naming the
    file and what is wrong with it.
    """
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a directory, not a checkpoint file")
    if not p.exists():
        raise FileNotFoundError(f"no such checkpoint: {p}")
    try:
        return _from_members(_read_npz(p))
    except _Invalid as e:
        raise ValueError(f"{p} is not a usable rnnext checkpoint: {e}") from None


class NonFiniteCheckpoint(ValueError):
    """save_checkpoint refused a state: ``name`` holds NaN or infinity."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"refusing to save a checkpoint whose {name} holds NaN or infinity"
        )

    def __reduce__(self) -> tuple[type[NonFiniteCheckpoint], tuple[str]]:
        return (type(self), (self.name,))


class _Invalid(Exception):
    """What is wrong with a file; load_checkpoint adds the file name."""


def _json_bytes(obj: object) -> npt.NDArray[np.uint8]:
    text = json.dumps(obj, sort_keys=True, allow_nan=False)
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def _finite(name: str, a: npt.ArrayLike) -> None:
    if not np.all(np.isfinite(a)):
        raise NonFiniteCheckpoint(name)


def _members(c: Checkpoint) -> dict[str, np.ndarray]:
    """The arrays of a checkpoint, checked, in the order they are written."""
    model, opt = c.model, c.optimizer
    if opt.model is not model:
        raise ValueError("checkpoint.optimizer must be the optimizer of its model")
    if len(c.vocab) != model.vocab_size:
        raise ValueError(
            f"vocabulary of {len(c.vocab)} characters does not match the "
            f"model's vocab_size={model.vocab_size}"
        )
    config = dict(c.config)
    rows = config.get("rows")
    for key, value in (
        ("hidden_size", model.hidden_size),
        ("dtype", model.dtype.name),
    ):
        if config.get(key) != value:
            raise ValueError(
                f"config[{key!r}] is {config.get(key)!r}, but the model has {value!r}"
            )
    if not isinstance(rows, int) or rows < 1:
        raise ValueError(f"config['rows'] must be a positive int, got {rows!r}")
    state = model.zero_state(rows) if c.state is None else c.state
    if state.shape != (rows, model.hidden_size) or state.dtype != model.dtype:
        raise ValueError(
            f"state is a {state.dtype} array of shape {state.shape}, expected "
            f"{model.dtype.name} {(rows, model.hidden_size)}"
        )
    if c.epoch < 0 or c.feed < 0:
        raise ValueError(f"epoch and feed must be >= 0, got {c.epoch}, {c.feed}")
    if len(c.history) != c.epoch:
        raise ValueError(
            f"history has {len(c.history)} epochs, expected epoch={c.epoch}"
        )
    vals = [e.val for e in c.history]
    if any(v is None for v in vals) and any(v is not None for v in vals):
        raise ValueError("history must have a validation loss for all epochs or none")
    init = opt.initial_accumulator
    hyper = {
        "lr": opt.lr,
        "eps": opt.eps,
        "initial_accumulator": init,
        "clip": opt.clip,
        "clip_norm": opt.clip_norm,
    }
    bitgen = c.rng.bit_generator
    if type(bitgen).__name__ not in _BIT_GENERATORS:
        raise ValueError(
            f"rng uses {type(bitgen).__name__}; a checkpoint can hold one of "
            f"{', '.join(_BIT_GENERATORS)}"
        )

    members: dict[str, np.ndarray] = {
        "format": np.array(FORMAT_TAG),
        "version": np.array(FORMAT_VERSION, dtype=np.int64),
        "vocab": c.vocab.to_array(),
        "config": _json_bytes(config),
    }
    for name, a in zip(PARAM_NAMES, model.param_tuple()):
        _finite(name, a)
        members[name] = a
    for name in PARAM_NAMES:
        a = opt.accumulators[name]
        _finite(f"accumulator of {name}", a)
        members[f"accum_{name}"] = a
    _finite("state", state)
    _finite("loss_sum", c.loss_sum)
    _finite("history", [e.train for e in c.history])
    _finite("history", [v for v in vals if v is not None])
    members.update(
        optimizer=_json_bytes(hyper),
        epoch=np.array(c.epoch, dtype=np.int64),
        feed=np.array(c.feed, dtype=np.int64),
        loss_sum=np.array(c.loss_sum, dtype=np.float64),
        state=state,
        rng=_json_bytes(bitgen.state),
        history_train=np.array([e.train for e in c.history], dtype=np.float64),
        history_val=np.array([v for v in vals if v is not None], dtype=np.float64),
    )
    return members


def _write_npz(f: Any, members: Mapping[str, np.ndarray]) -> None:
    """What np.savez writes (stored, not compressed), with a fixed timestamp."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        for name, a in members.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            with z.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(a), allow_pickle=False)


def _sync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_npz(p: Path) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(p):
        raise _Invalid("not a zip archive (truncated, or not a checkpoint at all)")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    except Exception as e:  # zip, zlib and .npy header errors alike
        raise _Invalid(f"cannot read it ({type(e).__name__}: {e})") from None


def _from_members(m: dict[str, np.ndarray]) -> Checkpoint:
    tag = m.get("format")
    if tag is None or tag.dtype.kind != "U" or tag.shape != () or tag != FORMAT_TAG:
        raise _Invalid(
            f"no {FORMAT_TAG!r} format tag; it was written by something else"
        )
    version = _int(m, "version", minimum=1)
    if version > FORMAT_VERSION:
        raise _Invalid(
            f"it has format version {version}, newer than the {FORMAT_VERSION} "
            f"this rnnext reads; upgrade rnnext"
        )
    names = [
        "vocab",
        "config",
        *PARAM_NAMES,
        *(f"accum_{k}" for k in PARAM_NAMES),
        "optimizer",
        "epoch",
        "feed",
        "loss_sum",
        "state",
        "rng",
        "history_train",
        "history_val",
    ]
    missing = [k for k in names if k not in m]
    if missing:
        raise _Invalid(f"it lacks {', '.join(missing)}")

    try:
        vocab = Vocabulary.from_array(m["vocab"])
    except (TypeError, ValueError) as e:
        raise _Invalid(f"bad vocab: {e}") from None
    V = len(vocab)
    config = _json(m, "config")
    if not isinstance(config, dict):
        raise _Invalid("config is not a JSON object")
    H, B = config.get("hidden_size"), config.get("rows")
    if type(H) is not int or type(B) is not int or H < 1 or B < 1:
        raise _Invalid(f"config has hidden_size={H!r}, rows={B!r}")
    if config.get("dtype") not in [d.name for d in DTYPES]:
        raise _Invalid(f"config has dtype={config.get('dtype')!r}")
    dt = np.dtype(config["dtype"])
    # the stored weights must fit the config before a model of that size is made
    shapes = dict(zip(PARAM_NAMES, ((V, H), (H, H), (H,), (H, V), (V,))))
    weights = {name: _floats(m, name, shape, dt) for name, shape in shapes.items()}
    model = CharRNN(V, H, dtype=dt)
    model.params.update(weights)

    hyper = _json(m, "optimizer")
    if not isinstance(hyper, dict):
        raise _Invalid("optimizer is not a JSON object")
    try:
        opt = Adagrad(
            model,
            lr=hyper["lr"],
            initial_accumulator=hyper["initial_accumulator"],
            eps=hyper["eps"],
            clip=hyper["clip"],
            clip_norm=hyper["clip_norm"],
        )
    except (KeyError, TypeError, ValueError) as e:
        raise _Invalid(f"bad optimizer settings {hyper}: {e}") from None
    for name, shape in shapes.items():
        a = _floats(m, f"accum_{name}", shape, dt)
        if (a < 0).any():
            raise _Invalid(f"accum_{name} has negative values")
        opt.accumulators[name] = a

    epoch, feed = _int(m, "epoch", minimum=0), _int(m, "feed", minimum=0)
    loss_sum = float(_floats(m, "loss_sum", (), np.dtype(np.float64)))
    state = _floats(m, "state", (B, H), dt)
    rng = _generator(_json(m, "rng"))

    train = _floats(m, "history_train", (epoch,), np.dtype(np.float64))
    val = m["history_val"]
    if val.shape != (0,):
        val = _floats(m, "history_val", (epoch,), np.dtype(np.float64))
    history = [
        EpochLoss(float(t), float(val[i]) if val.size else None)
        for i, t in enumerate(train)
    ]
    return Checkpoint(
        model, opt, vocab, config, epoch, feed, state, rng, history, loss_sum
    )


def _int(m: dict[str, np.ndarray], name: str, *, minimum: int) -> int:
    if name not in m:
        raise _Invalid(f"it lacks {name}")
    a = m[name]
    if a.shape != () or a.dtype.kind not in "iu" or a < minimum:
        raise _Invalid(f"{name} must be an integer >= {minimum}, got {a!r}")
    return int(a)


def _floats(
    m: dict[str, np.ndarray], name: str, shape: tuple[int, ...], dt: np.dtype[Any]
) -> FloatArray:
    """Member ``name`` as a new writeable array, if of this shape and dtype."""
    a = m[name]
    if a.shape != shape or a.dtype != dt:
        raise _Invalid(
            f"{name} is a {a.dtype} array of shape {a.shape}, expected {dt.name} "
            f"of shape {shape} (from the vocabulary and config)"
        )
    if not np.isfinite(a).all():
        raise _Invalid(f"{name} holds NaN or infinity")
    return np.array(a, order="C", copy=True)


def _json(m: dict[str, np.ndarray], name: str) -> Any:
    a = m[name]
    if a.ndim != 1 or a.dtype != np.uint8:
        raise _Invalid(f"{name} must be JSON text as uint8, got {a.dtype} {a.shape}")
    try:
        return json.loads(a.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _Invalid(f"{name} is not valid JSON ({e})") from None


def _generator(state: object) -> np.random.Generator:
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:
        raise _Invalid(f"rng names bit generator {name!r}")
    bitgen = getattr(np.random, name)()
    try:
        bitgen.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise _Invalid(f"bad rng state: {e}") from None
    return np.random.Generator(bitgen)
