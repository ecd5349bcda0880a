# What the benchmarks time, and the checks each passes before it is timed:
# one Adagrad step of rnnext, of the NumPy oracle and of PyTorch on real
# consecutive feeds of tiny Shakespeare, sampling at H=16, and the tutorial's
# whole training job. Timing itself lives in conftest.py and compare.py.
#
# B rows, T steps, H hidden, V vocabulary.
from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

import rnnext
from rnnext import reference as ref

CONFIGS = {  # name: (H, B, T)
    "tutorial": (16, 200, 10),
    "mid": (128, 64, 50),
    "large": (512, 64, 50),
}
NAMES = ref.PARAM_NAMES
LR, INITIAL_ACCUMULATOR, EPS = 0.1, 0.1, 1e-10
TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
FEEDS = 32  # consecutive feeds a step benchmark cycles through
THREADS = 2  # for every implementation, unless a benchmark says otherwise

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
MISSING = (
    f"tiny Shakespeare is not at {CORPUS}: the benchmarks read it from "
    f"../shared/data/tinyshakespeare.txt beside the repository (it is never "
    f"copied into it)"
)


def flop_per_token(H: int, V: int) -> int:
    """Forward, backward and softmax FLOP of one token; FMA = 2, tanh = 15."""
    return 6 * H * H + 6 * H * V + 22 * H + 21 * V


def torch_or_none() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


@cache
def corpus_ids() -> tuple[np.ndarray, int]:
    """The ids of tiny Shakespeare and V; FileNotFoundError if it is absent."""
    if not CORPUS.is_file():
        raise FileNotFoundError(MISSING)
    corpus, vocab = rnnext.load_corpus(CORPUS, rows=1, steps=1)
    return corpus.ids, len(vocab)


def feeds(B: int, T: int, n: int = FEEDS) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first n consecutive (X, Y) feeds of B rows and T steps."""
    ids, _ = corpus_ids()
    corpus = rnnext.Corpus(ids, B, T)
    return [corpus.feed(i) for i in range(min(n, corpus.feeds_per_epoch))]


def max_rel_err(actual: Any, expected: Any) -> float:
    """max |actual - expected|, relative to the largest magnitude of either."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(e))), 1e-300)
    return float(np.max(np.abs(a - e))) / scale


def assert_close(actual: Any, expected: Any, tol: float, what: str) -> None:
    err = max_rel_err(actual, expected)
    diff = float(np.max(np.abs(np.asarray(actual, np.float64) - expected)))
    assert err <= tol, f"{what}: max diff {diff:.3e}, rel err {err:.3e} > {tol:.0e}"


# ---------------------------------------------------------------------------
# One Adagrad step, three ways


@dataclass
class Impl:
    """One implementation of the training step, behind one interface.

    step(X, Y, h) -> (loss, h_T) trains in place on one feed given in the
    implementation's own types, which feed(X, Y) makes from NumPy ids;
    params() gives the current parameters as float64 arrays named as in the
    oracle, and state(h) a state as a NumPy array.
    """

    name: str
    dtype: np.dtype[Any]
    step: Callable[[Any, Any, Any], tuple[float, Any]]
    zero_state: Callable[[int], Any]
    feed: Callable[[np.ndarray, np.ndarray], tuple[Any, Any]]
    params: Callable[[], dict[str, np.ndarray]]
    state: Callable[[Any], np.ndarray]


def _as_float64(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.array(params[k], dtype=np.float64) for k in NAMES}


def rnnext_impl(V: int, H: int, dtype: Any = np.float32, threads: int = THREADS):
    model = rnnext.CharRNN(V, H, seed=0, dtype=dtype)
    opt = rnnext.Adagrad(model, LR, INITIAL_ACCUMULATOR, EPS)

    def step(X, Y, h):
        rnnext.set_num_threads(threads)
        return opt.step(X, Y, h)

    label = "rnnext" if threads == THREADS else f"rnnext, {threads} thread"
    return Impl(
        name=label + ("" if model.dtype == np.float32 else f" {model.dtype}"),
        dtype=model.dtype,
        step=step,
        zero_state=model.zero_state,
        feed=lambda X, Y: (X, Y),
        params=lambda: _as_float64(model.params),
        state=np.asarray,
    )


def numpy_impl(V: int, H: int, dtype: Any = np.float32) -> Impl:
    params = ref.init_params(V, H, seed=0, dtype=dtype)
    accums = {k: np.full_like(w, INITIAL_ACCUMULATOR) for k, w in params.items()}
    dt = np.dtype(dtype)

    def step(X, Y, h):
        return ref.step(params, accums, X, Y, h, lr=LR, eps=EPS)

    return Impl(
        name="NumPy" if dt == np.float32 else f"NumPy {dt}",
        dtype=dt,
        step=step,
        zero_state=lambda B: np.zeros((B, H), dtype=dt),
        feed=lambda X, Y: (X, Y),
        params=lambda: _as_float64(params),
        state=np.asarray,
    )


def torch_impl(V: int, H: int, threads: int = THREADS) -> Impl:
    """nn.RNN + nn.Linear + cross-entropy + Adagrad, at the oracle's init.

    The input is one-hot, so weight_ih_l0 is W_input transposed; bias_ih_l0
    stays zero and frozen, so bias_hh_l0 alone is b_hidden.
    """
    torch = torch_or_none()
    assert torch is not None, "torch_impl needs torch"
    nn, F = torch.nn, torch.nn.functional
    torch.set_num_threads(threads)
    rnn = nn.RNN(V, H, nonlinearity="tanh", batch_first=True)
    linear = nn.Linear(H, V)
    init = ref.init_params(V, H, seed=0, dtype=np.float32)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(init["W_input"].T.copy()))
        rnn.weight_hh_l0.copy_(torch.from_numpy(init["W_hidden"].T.copy()))
        rnn.bias_hh_l0.copy_(torch.from_numpy(init["b_hidden"]))
        rnn.bias_ih_l0.zero_()
        linear.weight.copy_(torch.from_numpy(init["W_softmax"].T.copy()))
        linear.bias.copy_(torch.from_numpy(init["b_softmax"]))
    rnn.bias_ih_l0.requires_grad_(False)
    trained = [p for p in (*rnn.parameters(), *linear.parameters()) if p.requires_grad]
    opt = torch.optim.Adagrad(
        trained, lr=LR, initial_accumulator_value=INITIAL_ACCUMULATOR, eps=EPS
    )

    def step(X, Y, h):
        out, h_T = rnn(F.one_hot(X, V).to(torch.float32), h)  # (B, T, H)
        logits = linear(out)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, V), Y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item(), h_T.detach()

    def feed(X, Y):
        return torch.from_numpy(X.astype(np.int64)), torch.from_numpy(
            Y.astype(np.int64)
        )

    def params():
        with torch.no_grad():
            pairs = {
                "W_input": rnn.weight_ih_l0.T,
                "W_hidden": rnn.weight_hh_l0.T,
                "b_hidden": rnn.bias_hh_l0,
                "W_softmax": linear.weight.T,
                "b_softmax": linear.bias,
            }
            return {k: w.numpy().astype(np.float64) for k, w in pairs.items()}

    return Impl(
        name="PyTorch",
        dtype=np.dtype(np.float32),
        step=step,
        zero_state=lambda B: torch.zeros(1, B, H),
        feed=feed,
        params=params,
        state=lambda h: h.numpy()[0],
    )


IMPLS = {"rnnext": rnnext_impl, "numpy": numpy_impl, "torch": torch_impl}


def check_step(impl: Impl, X: np.ndarray, Y: np.ndarray) -> None:
    """One step of impl from a zero state agrees with the float64 oracle."""
    B, H = X.shape[0], impl.params()["W_hidden"].shape[0]
    params = impl.params()
    accums = {k: np.full_like(w, INITIAL_ACCUMULATOR) for k, w in params.items()}
    h0 = np.zeros((B, H))
    loss_ref, h_T_ref = ref.step(params, accums, X, Y, h0, lr=LR, eps=EPS)

    loss, h_T = impl.step(*impl.feed(X, Y), impl.zero_state(B))
    tol = TOL[impl.dtype]
    assert_close(loss, loss_ref, tol, f"{impl.name} loss")
    assert_close(impl.state(h_T), h_T_ref, tol, f"{impl.name} h_T")
    after = impl.params()
    for k in NAMES:
        assert_close(after[k], params[k], tol, f"{impl.name} {k} after one step")


class Run:
    """Calls impl.step on consecutive feeds, carrying h_T; restarts at the end.

    The feeds are converted once, here, so that a call times only the step.
    """

    def __init__(self, impl: Impl, feeds: list[tuple[np.ndarray, np.ndarray]]):
        self.impl, self.name = impl, impl.name
        self.feeds = [impl.feed(X, Y) for X, Y in feeds]
        B, T = feeds[0][0].shape
        self.tokens = B * T  # per call
        self.h0 = impl.zero_state(B)
        self.h = self.h0
        self.i = 0
        self.loss = math.nan

    def __call__(self) -> float:
        X, Y = self.feeds[self.i]
        self.loss, self.h = self.impl.step(X, Y, self.h)
        self.i += 1
        if self.i == len(self.feeds):
            self.i, self.h = 0, self.h0
        return self.loss


def step_run(impl: str, config: str, **options: Any) -> Run:
    """A checked Run of one implementation ("rnnext", "numpy", "torch")."""
    H, B, T = CONFIGS[config]
    _, V = corpus_ids()
    fs = feeds(B, T)
    made = IMPLS[impl](V, H, **options)
    check_step(made, *fs[0])
    return Run(made, fs)


# ---------------------------------------------------------------------------
# Sampling


def trained_params(H: int = 16, steps: int = 200) -> dict[str, np.ndarray]:
    """float32 params after a few tutorial-sized steps, so sampling is real."""
    _, V = corpus_ids()
    model = rnnext.CharRNN(V, H, seed=0)
    opt = rnnext.Adagrad(model, LR, INITIAL_ACCUMULATOR, EPS)
    _, B, T = CONFIGS["tutorial"]
    corpus = rnnext.Corpus(corpus_ids()[0], B, T)
    h = model.zero_state(B)
    for i in range(steps):
        _, h = opt.step(*corpus.feed(i % corpus.feeds_per_epoch), h)
    return {k: model.params[k].copy() for k in NAMES}


def sampler() -> Callable[..., np.ndarray] | None:
    """The compiled sampler, or None while rnnext has none."""
    return getattr(rnnext._core, "sample", None)


def sample_rnnext(params, prime, length, greedy, seed=0, temperature=1.0):
    sample = sampler()
    assert sample is not None, "rnnext has no compiled sampler"
    out = sample(
        *(params[k] for k in NAMES),
        np.asarray(prime, dtype=np.int32),
        length,
        temperature,
        greedy,
        0,
        seed,
        1,
        1,
    )
    return out[0]


def _oracle_logits(params, prime, ids) -> np.ndarray:
    """float64 logits before each of ids, feeding the prime and then ids."""
    p = _as_float64(params)
    W_input, W_hidden, b_hidden, W_softmax, b_softmax = (p[k] for k in NAMES)
    h = np.zeros(W_hidden.shape[0])
    for x in prime[:-1]:
        h = np.tanh(W_input[x] + h @ W_hidden + b_hidden)
    out = np.empty((len(ids), W_softmax.shape[1]))
    x = prime[-1]
    for i, y in enumerate(ids):
        h = np.tanh(W_input[x] + h @ W_hidden + b_hidden)
        out[i] = h @ W_softmax + b_softmax
        x = y
    return out


def check_greedy(params, prime, ids) -> None:
    """Every id is an argmax of the oracle's logits, to float32 rounding."""
    logits = _oracle_logits(params, prime, ids)
    best = logits.max(axis=1)
    chosen = logits[np.arange(len(ids)), ids]
    gap = best - chosen
    worst = int(np.argmax(gap))
    tol = 1e-4 * max(1.0, float(np.abs(best).max()))
    assert gap[worst] <= tol, (
        f"greedy id {ids[worst]} at position {worst} has logit {chosen[worst]:.6f}, "
        f"the maximum is {best[worst]:.6f} (tolerance {tol:.1e})"
    )


def check_weighted(params, prime, ids) -> None:
    """Drawn ids are as likely as the oracle's softmax says, on average.

    Under the model, E[-log p(x_t)] = E[entropy_t]; the mean over L draws
    of their difference is 0 within a few standard errors.
    """
    V = params["W_softmax"].shape[1]
    assert ids.min() >= 0 and ids.max() < V, f"ids outside [0, {V})"
    logits = _oracle_logits(params, prime, ids)
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    nll = -log_p[np.arange(len(ids)), ids]
    entropy = -(np.exp(log_p) * log_p).sum(axis=1)
    d = nll - entropy
    se = float(d.std()) / math.sqrt(len(d))
    assert abs(float(d.mean())) <= 5 * se, (
        f"mean surprise minus entropy {d.mean():.4f} exceeds 5 standard "
        f"errors ({5 * se:.4f}) over {len(d)} draws"
    )


@dataclass
class SampleRun:
    """One call generates `tokens` characters from one stream."""

    name: str
    call: Callable[[], np.ndarray]
    tokens: int

    def __call__(self) -> np.ndarray:
        return self.call()


def sample_run(impl: str, greedy: bool, length: int) -> SampleRun:
    """A checked SampleRun of "rnnext" or "numpy" (the oracle's sampler)."""
    params = trained_params()
    prime = corpus_ids()[0][:8].astype(np.int32)
    mode = "greedy" if greedy else "weighted"
    if impl == "rnnext":
        if sampler() is None:
            raise LookupError("rnnext has no compiled sampler yet")

        def call():
            return sample_rnnext(params, prime, length, greedy)

        check = sample_rnnext(params, prime, max(length, 4000), greedy)
        if not greedy:
            again = sample_rnnext(params, prime, max(length, 4000), greedy)
            assert np.array_equal(check, again), "the same seed drew other ids"
        name = f"rnnext {mode}"
    else:
        rng = np.random.default_rng(0)

        def call():
            return ref.sample(params, prime, length, greedy=greedy, rng=rng)

        check = call()
        name = f"NumPy {mode}"
    (check_greedy if greedy else check_weighted)(params, prime, check)
    return SampleRun(name, call, length)


# ---------------------------------------------------------------------------
# The tutorial's whole job


class Job:
    """Epochs of the tutorial size on the bundled corpus, as a plain loop of
    steps: h_T carried from feed to feed and reset at each epoch.

    A call runs it and returns each epoch's mean loss; with max_feeds every
    epoch stops after that many feeds. The first step is checked against
    the oracle on construction, on a model of its own.
    """

    def __init__(
        self, impl: str = "rnnext", epochs: int = 100, max_feeds: int | None = None
    ):
        H, self.B, T = CONFIGS["tutorial"]
        path = rnnext.bundled_corpus_path()
        self.corpus, vocab = rnnext.load_corpus(path, self.B, T)
        self.V = len(vocab)
        check_step(IMPLS[impl](self.V, H), *self.corpus.feed(0))
        self.impl = IMPLS[impl](self.V, H)
        self.name = f"{self.impl.name}, {epochs} epochs"
        self.epochs = epochs
        F = self.corpus.feeds_per_epoch
        self.feeds = F if max_feeds is None else min(max_feeds, F)
        self.tokens = epochs * self.feeds * self.B * T

    def __call__(self) -> list[float]:
        step, feed = self.impl.step, self.impl.feed
        means = []
        for _ in range(self.epochs):
            h, total = self.impl.zero_state(self.B), 0.0
            for i in range(self.feeds):
                loss, h = step(*feed(*self.corpus.feed(i)), h)
                total += loss
            means.append(total / self.feeds)
        return means


def check_job(means: list[float], V: int) -> None:
    """Training lowered the loss below that of a uniform guess, ln V."""
    assert all(math.isfinite(m) for m in means), f"non-finite epoch loss: {means}"
    assert means[-1] < math.log(V), (
        f"last epoch's loss {means[-1]:.3f} is not below ln V = {math.log(V):.3f}"
    )


def blas_report() -> str:
    """Which BLAS NumPy runs, its kernel and threads, and the OpenBLAS env."""
    env = ", ".join(
        f"{k}={os.environ[k]}" if k in os.environ else f"{k} unset"
        for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    )
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return f"threadpoolctl not installed ({env})"
    libs = [
        f"{i['internal_api']} {i.get('version')} kernel {i.get('architecture')} "
        f"threads {i['num_threads']}"
        for i in threadpool_info()
        if i["user_api"] == "blas"
    ]
    return "; ".join(libs or ["no BLAS found"]) + f" ({env})"


def machine_report() -> list[str]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    torch = torch_or_none()
    return [
        f"CPU: {model}, nproc {len(os.sched_getaffinity(0))}, "
        f"rnnext ISA {rnnext._core.isa()}",
        f"NumPy {np.__version__} BLAS: {blas_report()}",
        f"PyTorch: {torch.__version__ if torch else 'not installed'}",
    ]
