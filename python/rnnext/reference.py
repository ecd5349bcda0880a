"""Plain NumPy char-RNN: the oracle the compiled kernel is tested against.

Written for clarity, not speed: vectorised over rows, one Python loop over
steps, everything computed in the dtype of the params. No input checking
beyond a few asserts; the public model does that.

B = rows, T = steps, H = hidden, V = vocabulary.

    h_t      = tanh(W_input[x_t] + h_{t-1} @ W_hidden + b_hidden)
    logits_t = h_t @ W_softmax + b_softmax
    loss     = mean softmax cross-entropy over the B*T tokens
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.integer[Any]]
Params = dict[str, FloatArray]

PARAM_NAMES = ("W_input", "W_hidden", "b_hidden", "W_softmax", "b_softmax")


def init_params(
    V: int, H: int, seed: int = 0, dtype: npt.DTypeLike = np.float64
) -> Params:
    """Weights ~ U(-1/sqrt(H), 1/sqrt(H)) drawn in key order, biases zero."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(H)
    shapes = {
        "W_input": (V, H),
        "W_hidden": (H, H),
        "b_hidden": (H,),
        "W_softmax": (H, V),
        "b_softmax": (V,),
    }
    params: Params = {}
    for name, shape in shapes.items():
        if name.startswith("W"):
            w = rng.uniform(-scale, scale, size=shape)
        else:
            w = np.zeros(shape)
        params[name] = w.astype(dtype)
    return params


def _log_softmax(logits: FloatArray) -> FloatArray:
    z = logits - logits.max(axis=-1, keepdims=True)
    out: FloatArray = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return out


def _forward(
    params: Params, X: IntArray, Y: IntArray, h0: FloatArray
) -> tuple[float, list[FloatArray], list[FloatArray]]:
    """Loss, the states h_0..h_T and the softmax of every step."""
    W_input, W_hidden, b_hidden, W_softmax, b_softmax = (
        params[name] for name in PARAM_NAMES
    )
    B, T = X.shape
    assert Y.shape == (B, T), f"Y has shape {Y.shape}, X has {X.shape}"
    dtype = W_hidden.dtype
    rows = np.arange(B)

    hs = [np.asarray(h0, dtype=dtype)]
    probs = []
    total = dtype.type(0)
    for t in range(T):
        h = np.tanh(W_input[X[:, t]] + hs[-1] @ W_hidden + b_hidden)
        log_p = _log_softmax(h @ W_softmax + b_softmax)  # (B, V)
        total -= log_p[rows, Y[:, t]].sum()
        hs.append(h)
        probs.append(np.exp(log_p))
    return float(total) / (B * T), hs, probs


def evaluate(
    params: Params, X: IntArray, Y: IntArray, h0: FloatArray
) -> tuple[float, FloatArray]:
    """Mean loss over the B*T tokens and the last state h_T (B, H)."""
    loss, hs, _ = _forward(params, X, Y, h0)
    return loss, hs[-1]


def loss_and_grads(
    params: Params, X: IntArray, Y: IntArray, h0: FloatArray
) -> tuple[float, Params, FloatArray]:
    """Mean loss, its gradient for every param and h0, and h_T."""
    loss, hs, probs = _forward(params, X, Y, h0)
    W_hidden, W_softmax = params["W_hidden"], params["W_softmax"]
    B, T = X.shape
    rows = np.arange(B)
    grads = {name: np.zeros_like(params[name]) for name in PARAM_NAMES}

    dh_next = np.zeros_like(hs[0])  # d loss / d h_t through h_{t+1}
    for t in reversed(range(T)):
        h, h_prev = hs[t + 1], hs[t]

        # loss = -mean log softmax(logits)[y]
        dlogits = probs[t].copy()
        dlogits[rows, Y[:, t]] -= 1
        dlogits /= B * T

        # logits_t = h_t @ W_softmax + b_softmax
        grads["W_softmax"] += h.T @ dlogits
        grads["b_softmax"] += dlogits.sum(axis=0)
        dh = dlogits @ W_softmax.T + dh_next

        # h_t = tanh(W_input[x_t] + h_{t-1} @ W_hidden + b_hidden)
        da = dh * (1 - h * h)
        np.add.at(grads["W_input"], X[:, t], da)
        grads["W_hidden"] += h_prev.T @ da
        grads["b_hidden"] += da.sum(axis=0)
        dh_next = da @ W_hidden.T

    grads["h0"] = dh_next
    return loss, grads, hs[-1]


def numerical_grad(
    f: Callable[[], float], w: FloatArray, eps: float = 1e-5
) -> FloatArray:
    """Central differences of the scalar f() for every element of w.

    w is perturbed in place, one element at a time, and restored.
    """
    g = np.zeros_like(w)
    for i in np.ndindex(w.shape):
        old = w[i]
        w[i] = old + eps
        up = f()
        w[i] = old - eps
        down = f()
        w[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def clip_grads(
    grads: Params, clip: float | None = None, clip_norm: float | None = None
) -> Params:
    """New dict of clipped grads; "h0" (if present) is copied unclipped.

    clip bounds every element to [-clip, clip]. clip_norm rescales the five
    parameter grads together when their joint norm exceeds it. If both are
    given, the elementwise clip comes first.
    """
    out = {name: g.copy() for name, g in grads.items()}
    if clip is not None:
        for name in PARAM_NAMES:
            np.clip(out[name], -clip, clip, out=out[name])
    if clip_norm is not None:
        norm = np.sqrt(sum(np.sum(out[name] ** 2) for name in PARAM_NAMES))
        if norm > clip_norm:
            for name in PARAM_NAMES:
                out[name] *= clip_norm / norm
    return out


def adagrad_update(
    params: Params, accums: Params, grads: Params, lr: float, eps: float
) -> None:
    """In place: accum += g*g; w -= lr * g / (sqrt(accum) + eps)."""
    for name in PARAM_NAMES:
        g = grads[name]
        accums[name] += g * g
        params[name] -= lr * g / (np.sqrt(accums[name]) + eps)


def step(
    params: Params,
    accums: Params,
    X: IntArray,
    Y: IntArray,
    h0: FloatArray,
    lr: float = 0.1,
    eps: float = 1e-10,
    clip: float | None = None,
    clip_norm: float | None = None,
) -> tuple[float, FloatArray]:
    """One Adagrad step in place; returns the loss before it and h_T."""
    loss, grads, h_T = loss_and_grads(params, X, Y, h0)
    adagrad_update(params, accums, clip_grads(grads, clip, clip_norm), lr, eps)
    return loss, h_T


def sample(
    params: Params,
    prime_ids: IntArray | list[int],
    length: int,
    temperature: float = 1.0,
    greedy: bool = False,
    rng: np.random.Generator | None = None,
) -> npt.NDArray[np.int32]:
    """length generated ids (int32), one row, starting from a zero state.

    The prime ids are fed first to warm the state. Greedy takes the argmax
    of each step's logits (first index on ties); otherwise ids are drawn
    from softmax(logits / temperature) with rng.
    """
    W_input, W_hidden, b_hidden, W_softmax, b_softmax = (
        params[name] for name in PARAM_NAMES
    )
    assert greedy or temperature > 0, f"temperature {temperature} must be > 0"
    if rng is None:
        rng = np.random.default_rng(0)

    h = np.zeros(W_hidden.shape[0], dtype=W_hidden.dtype)
    for x in prime_ids:
        h = np.tanh(W_input[x] + h @ W_hidden + b_hidden)

    out = np.empty(length, dtype=np.int32)
    for i in range(length):
        logits = h @ W_softmax + b_softmax  # (V,)
        if greedy:
            x = int(np.argmax(logits))
        else:
            p = np.exp(_log_softmax(logits.astype(np.float64) / temperature))
            x = int(rng.choice(p.size, p=p / p.sum()))
        out[i] = x
        h = np.tanh(W_input[x] + h @ W_hidden + b_hidden)
    return out
