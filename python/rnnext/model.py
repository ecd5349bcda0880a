"""The char-RNN model and its Adagrad optimizer, both thin over the C++ kernel.

Legend: B rows, T steps, H hidden, V vocabulary.

    h_t      = tanh(W_input[x_t] + h_{t-1} @ W_hidden + b_hidden)
    logits_t = h_t @ W_softmax + b_softmax
    loss     = mean softmax cross-entropy over the B*T tokens
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
import os
from typing import Any

import numpy as np
import numpy.typing as npt

from rnnext import _core

PARAM_NAMES = ("W_input", "W_hidden", "b_hidden", "W_softmax", "b_softmax")
_in_kernel_order = operator.itemgetter(*PARAM_NAMES)  # a dict's five, as a tuple
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

FloatArray = npt.NDArray[Any]

_num_threads: int | None = None


@functools.cache
def _default_threads() -> int:
    env = os.environ.get("RNNEXT_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(
                f"RNNEXT_NUM_THREADS must be a positive integer, got {env!r}"
            )
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_num_threads(n: int | None) -> None:
    """Set the threads every kernel call uses; None restores the default.

    The default is the environment variable RNNEXT_NUM_THREADS if set, else
    every core this process may run on, both read once at the first call.
    Results do not depend on the thread count.
    """
    global _num_threads
    if n is not None:
        n = check_int(n, "num_threads", minimum=1)
    _num_threads = n


def get_num_threads() -> int:
    """The number of threads kernel calls use."""
    return _num_threads if _num_threads is not None else _default_threads()


def check_int(value: object, name: str, *, minimum: int) -> int:
    """Return value as an int if it is an integer >= minimum, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def check_float(value: object, name: str, *, positive: bool) -> float:
    """Return value as a float if finite and > 0 (or >= 0), else raise."""
    if type(value) is float and (
        0 < value < math.inf if positive else 0 <= value < math.inf
    ):
        return value  # the common case, checked on every step
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    try:
        x = float(value)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x) or x < 0 or (positive and x == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {x}")
    return x


class CharRNN:
    """A one-layer tanh RNN over characters, with a softmax output.

    Weights W_input, W_hidden and W_softmax are drawn from
    U(-1/sqrt(H), 1/sqrt(H)) with numpy.random.default_rng(seed); the
    biases start at zero. `params` maps the five names to arrays that may be
    changed in place (or replaced by arrays of the same shape and dtype).
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 16,
        *,
        seed: int = 0,
        dtype: npt.DTypeLike = np.float32,
    ) -> None:
        V = check_int(vocab_size, "vocab_size", minimum=1)
        H = check_int(hidden_size, "hidden_size", minimum=1)
        seed = check_int(seed, "seed", minimum=0)
        try:
            dt = np.dtype(dtype)
        except TypeError:
            dt = None
        if dt is None or dt not in DTYPES:
            got = dt.name if dt is not None else repr(dtype)
            raise TypeError(f"dtype must be float32 or float64, got {got}")
        self.vocab_size, self.hidden_size, self.dtype = V, H, dt

        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(H)

        def uniform(*shape: int) -> FloatArray:
            return rng.uniform(-bound, bound, size=shape).astype(dt)

        self.params: dict[str, FloatArray] = {
            "W_input": uniform(V, H),
            "W_hidden": uniform(H, H),
            "b_hidden": np.zeros(H, dtype=dt),
            "W_softmax": uniform(H, V),
            "b_softmax": np.zeros(V, dtype=dt),
        }

    def __repr__(self) -> str:
        return (
            f"CharRNN(vocab_size={self.vocab_size}, "
            f"hidden_size={self.hidden_size}, dtype={self.dtype.name})"
        )

    def param_tuple(self) -> tuple[FloatArray, ...]:
        """The five parameters in kernel order, checked against the model."""
        try:
            arrays: tuple[FloatArray, ...] = _in_kernel_order(self.params)
        except KeyError:
            missing = [k for k in PARAM_NAMES if k not in self.params]
            raise KeyError(
                f"model.params lacks {missing}; it needs {PARAM_NAMES}"
            ) from None
        V, H, dt = self.vocab_size, self.hidden_size, self.dtype
        Wi, Wh, bh, Ws, bs = arrays
        # the usual case, checked in few operations (this runs at every step)
        if (
            type(Wi) is type(Wh) is type(bh) is type(Ws) is type(bs) is np.ndarray
            and Wi.dtype is dt
            and Wh.dtype is dt
            and bh.dtype is dt
            and Ws.dtype is dt
            and bs.dtype is dt
            and Wi.shape == (V, H)
            and Wh.shape == (H, H)
            and bh.shape == (H,)
            and Ws.shape == (H, V)
            and bs.shape == (V,)
        ):
            return arrays
        shapes = ((V, H), (H, H), (H,), (H, V), (V,))
        for name, a, shape in zip(PARAM_NAMES, arrays, shapes):
            if not isinstance(a, np.ndarray) or a.dtype != dt:
                got = getattr(a, "dtype", type(a).__name__)
                raise TypeError(
                    f"model.params[{name!r}] must be a {dt.name} array, got {got}"
                )
            if a.shape != shape:
                raise ValueError(
                    f"model.params[{name!r}] has shape {a.shape}, expected "
                    f"{shape} for vocab_size={V}, hidden_size={H}"
                )
        return arrays

    def zero_state(self, rows: int) -> FloatArray:
        """A (rows, H) state of zeros in the model's dtype."""
        rows = check_int(rows, "rows", minimum=1)
        return np.zeros((rows, self.hidden_size), dtype=self.dtype)

    def evaluate(
        self, X: npt.ArrayLike, Y: npt.ArrayLike, h0: npt.ArrayLike
    ) -> tuple[float, FloatArray]:
        """Mean cross-entropy (nats) of targets Y given inputs X: (loss, h_T)."""
        loss, hT = _core.evaluate(
            self.param_tuple(), *_arrays(X, Y, h0), get_num_threads()
        )
        return loss, hT

    def loss_and_grads(
        self, X: npt.ArrayLike, Y: npt.ArrayLike, h0: npt.ArrayLike
    ) -> tuple[float, dict[str, FloatArray], FloatArray]:
        """Loss, gradients (the five parameters and "h0") and h_T."""
        loss, grads, hT = _core.loss_and_grads(
            self.param_tuple(), *_arrays(X, Y, h0), get_num_threads()
        )
        return loss, dict(zip((*PARAM_NAMES, "h0"), grads)), hT


class Adagrad:
    """Adagrad over a CharRNN, each step one fused C++ call.

    Per parameter w with gradient g, after optional clipping (elementwise to
    [-clip, clip], or rescaled so that the global norm is at most clip_norm):

        accum += g * g
        w     -= lr * g / (sqrt(accum) + eps)

    Accumulators start at initial_accumulator; with 0 this is exactly
    torch.optim.Adagrad. A step whose loss, gradient or new values would not
    be finite changes nothing (`updated` is then False). The options may be
    changed between steps; each step checks them.
    """

    def __init__(
        self,
        model: CharRNN,
        lr: float = 0.1,
        initial_accumulator: float = 0.1,
        eps: float = 1e-10,
        *,
        clip: float | None = None,
        clip_norm: float | None = None,
    ) -> None:
        if not isinstance(model, CharRNN):
            raise TypeError(f"model must be a CharRNN, got {type(model).__name__}")
        self.model = model
        self.lr, self.eps = lr, eps
        self.clip: float | None = clip
        self.clip_norm: float | None = clip_norm
        # the same checks as every step, keeping the values as plain floats
        self.lr, self.eps, c, n = self._options()
        self.clip, self.clip_norm = c or None, n or None
        init = check_float(initial_accumulator, "initial_accumulator", positive=False)
        self.initial_accumulator = init
        if init == 0 and self.eps == 0:
            raise ValueError(
                "initial_accumulator and eps cannot both be 0: the first "
                "update would divide by zero"
            )
        self.accumulators: dict[str, FloatArray] = {
            k: np.full_like(a, init) for k, a in zip(PARAM_NAMES, model.param_tuple())
        }
        self.grad_norm = math.nan  # of the last step, before clipping
        self.updated = False  # whether the last step changed the parameters

    def __repr__(self) -> str:
        return (
            f"Adagrad(lr={self.lr}, eps={self.eps}, clip={self.clip}, "
            f"clip_norm={self.clip_norm})"
        )

    def _options(self) -> tuple[float, float, float, float]:
        """lr, eps, clip, clip_norm as the kernel takes them (0: no clipping)."""
        lr = check_float(self.lr, "lr", positive=True)
        eps = check_float(self.eps, "eps", positive=False)
        if self.clip is not None and self.clip_norm is not None:
            raise ValueError("clip and clip_norm cannot both be set: choose one")
        clip = (
            0.0 if self.clip is None else check_float(self.clip, "clip", positive=True)
        )
        norm = (
            0.0
            if self.clip_norm is None
            else check_float(self.clip_norm, "clip_norm", positive=True)
        )
        return lr, eps, clip, norm

    def step(
        self, X: npt.ArrayLike, Y: npt.ArrayLike, h0: npt.ArrayLike
    ) -> tuple[float, FloatArray]:
        """Forward, backward, clip and update for one feed: (loss, h_T)."""
        options = self._options()
        accums = _in_kernel_order(self.accumulators)
        loss, hT, self.grad_norm, self.updated = _core.adagrad_step(
            self.model.param_tuple(),
            accums,
            *_arrays(X, Y, h0),
            *options,
            get_num_threads(),
        )
        return loss, hT

    def steps(
        self,
        rows: npt.ArrayLike,
        steps: int,
        start: int,
        count: int,
        h0: npt.ArrayLike,
    ) -> tuple[npt.NDArray[np.float64], FloatArray]:
        """`count` fused steps over consecutive feeds, in one C++ call.

        rows is an integer array (B, L + 1) of any strides (a view of the
        corpus, never copied whole); feed i reads X = rows[:, i*T:(i+1)*T]
        and Y = rows[:, i*T+1:(i+1)*T+1] with T = steps. Runs feeds start ..
        start + count - 1, each from the state the previous one ended in.
        Returns the losses (float64, one per feed) and the final state. A
        step whose loss, gradient or new values would not be finite is not
        applied and ends the call: its loss and all later ones are NaN, and
        the state is the one before it.
        """
        T = check_int(steps, "steps", minimum=1)
        start = check_int(start, "start", minimum=0)
        count = check_int(count, "count", minimum=1)
        options = self._options()
        accums = _in_kernel_order(self.accumulators)
        losses, hT = _core.adagrad_steps(
            self.model.param_tuple(),
            accums,
            _array(rows),
            T,
            start,
            count,
            _array(h0),
            *options,
            get_num_threads(),
        )
        return losses, hT


def _arrays(
    X: object, Y: object, h0: object
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
    # lists and other sequences become arrays; the kernel checks the rest
    return _array(X), _array(Y), _array(h0)


def _array(a: object) -> npt.NDArray[Any]:
    return a if isinstance(a, np.ndarray) else np.asarray(a)
