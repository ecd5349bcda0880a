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
from rnnext.trainer import Progress

CONFIGS = {  # name: (H, B, T)
    "tutorial": (16, 200, 10),
    "mid": (128, 64, 50),
    "large": (512, 64, 50),
}
NAMES = ref.PARAM_NAMES
LR, INITIAL_ACCUMULATOR, EPS = 0.1, 0.1, 1e-10
TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
FEEDS = 50  # consecutive feeds a step benchmark cycles through
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


def rnnext_impl(
    V: int, H: int, dtype: Any = np.float32, threads: int = THREADS
) -> Impl:
    model = rnnext.CharRNN(V, H, seed=0, dtype=dtype)
    opt = rnnext.Adagrad(model, LR, INITIAL_ACCUMULATOR, EPS)

    def step(X, Y, h):
        if rnnext.get_num_threads() != threads:  # another Impl changed it
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


@cache
def _blas_libraries() -> tuple[Any, ...]:
    """threadpoolctl's handles on NumPy's BLAS, or () without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return ()
    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


def set_blas_threads(n: int) -> None:
    """Cheap enough to call before every step: only changes what differs."""
    for lib in _blas_libraries():
        if lib.num_threads != n:
            lib.set_num_threads(n)


def numpy_impl(V: int, H: int, dtype: Any = np.float32, threads: int = THREADS) -> Impl:
    """The oracle's step; its BLAS set to `threads` threads (if threadpoolctl
    is there to do it)."""
    params = ref.init_params(V, H, seed=0, dtype=dtype)
    accums = {k: np.full_like(w, INITIAL_ACCUMULATOR) for k, w in params.items()}
    dt = np.dtype(dtype)
    if threads != THREADS and not _blas_libraries():
        raise LookupError("setting NumPy's BLAS threads needs threadpoolctl")

    def step(X, Y, h):
        set_blas_threads(threads)
        return ref.step(params, accums, X, Y, h, lr=LR, eps=EPS)

    name = "NumPy" if dt == np.float32 else f"NumPy {dt}"
    return Impl(
        name=name if threads == THREADS else f"{name}, {threads} thread",
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
        if torch.get_num_threads() != threads:  # another Impl changed it
            torch.set_num_threads(threads)
        # one-hot inputs; F.one_hot(X, V).float() is the same, 3x slower
        x = torch.zeros(*X.shape, V).scatter_(2, X.unsqueeze(2), 1.0)
        out, h_T = rnn(x, h)  # (B, T, H)
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
        name="PyTorch" if threads == THREADS else f"PyTorch, {threads} thread",
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
    set_blas_threads(1)  # many small products: quicker on one thread
    loss_ref, h_T_ref = ref.step(params, accums, X, Y, h0, lr=LR, eps=EPS)
    set_blas_threads(THREADS)

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


class StepsRun:
    """rnnext's Adagrad.steps: `count` consecutive feeds in one call, as the
    Trainer makes them, cycling through the first FEEDS feeds.

    Checked on construction: the first step against the oracle, and one call
    against `count` calls of Adagrad.step on a twin model.
    """

    def __init__(self, config: str, count: int = 25):
        H, B, self.T = CONFIGS[config]
        ids, V = corpus_ids()
        corpus = rnnext.Corpus(ids, B, self.T)
        self.rows, self.count = corpus.train_rows(), count
        check_step(rnnext_impl(V, H), *corpus.feed(0))

        self.model = rnnext.CharRNN(V, H, seed=0)
        self.opt = rnnext.Adagrad(self.model, LR, INITIAL_ACCUMULATOR, EPS)
        twin = rnnext.CharRNN(V, H, seed=0)
        twin_opt = rnnext.Adagrad(twin, LR, INITIAL_ACCUMULATOR, EPS)
        rnnext.set_num_threads(THREADS)
        h, expected = twin.zero_state(B), []
        for i in range(count):
            loss, h = twin_opt.step(*corpus.feed(i), h)
            expected.append(loss)
        self.h0 = self.model.zero_state(B)
        losses, h_T = self.opt.steps(self.rows, self.T, 0, count, self.h0)
        tol = TOL[np.dtype(np.float32)]
        assert_close(losses, expected, tol, "Adagrad.steps losses")
        assert_close(h_T, h, tol, "Adagrad.steps h_T")
        for k in NAMES:
            assert_close(self.model.params[k], twin.params[k], tol, f"steps {k}")

        self.name = f"rnnext, {count} feeds a call"
        self.tokens = count * B * self.T
        self.start, self.h = count, h_T

    def __call__(self) -> float:
        rnnext.set_num_threads(THREADS)
        if self.start + self.count > FEEDS:
            self.start, self.h = 0, self.h0
        losses, self.h = self.opt.steps(
            self.rows, self.T, self.start, self.count, self.h
        )
        self.start += self.count
        return float(losses[-1])


# ---------------------------------------------------------------------------
# Sampling


@cache
def trained(H: int = 16, steps: int = 200) -> tuple[rnnext.CharRNN, rnnext.Vocabulary]:
    """A float32 model after a few tutorial-sized steps, so sampling is real."""
    corpus, vocab = rnnext.load_corpus(CORPUS, *CONFIGS["tutorial"][1:])
    model = rnnext.CharRNN(len(vocab), H, seed=0)
    opt = rnnext.Adagrad(model, LR, INITIAL_ACCUMULATOR, EPS)
    h = model.zero_state(corpus.rows)
    for i in range(steps):
        _, h = opt.step(*corpus.feed(i % corpus.feeds_per_epoch), h)
    return model, vocab


def has_sampler() -> bool:
    return hasattr(rnnext, "sample")


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
    call: Callable[[], Any]
    tokens: int

    def __call__(self) -> Any:
        return self.call()


def sample_run(impl: str, greedy: bool, length: int) -> SampleRun:
    """A checked SampleRun: "rnnext" (rnnext.sample) or "numpy" (the oracle's).

    rnnext's call returns the text, the oracle's the ids; both start from
    the prime "ROMEO:" at temperature 1.
    """
    model, vocab = trained()
    params = {k: model.params[k] for k in NAMES}
    prime = "ROMEO:"
    prime_ids = vocab.encode(prime).astype(np.int32)
    mode = "greedy" if greedy else "weighted"
    if impl == "rnnext":
        if not has_sampler():
            raise LookupError("rnnext has no sampler yet")

        def call() -> list[str]:
            return rnnext.sample(model, vocab, prime, length, greedy=greedy)

        def ids(n: int, seed: int = 0) -> np.ndarray:
            (text,) = rnnext.sample(model, vocab, prime, n, greedy=greedy, seed=seed)
            return vocab.encode(text[len(prime) :])

        check = ids(max(length, 4000))
        if not greedy:
            again = ids(max(length, 4000))
            assert np.array_equal(check, again), "the same seed drew other ids"
            other = ids(max(length, 4000), seed=1)
            assert not np.array_equal(check, other), "seeds 0 and 1 drew the same"
        name = f"rnnext {mode}"
    else:
        rng = np.random.default_rng(0)

        def call() -> np.ndarray:
            return ref.sample(params, prime_ids, length, greedy=greedy, rng=rng)

        check = call()
        name = f"NumPy {mode}"
    (check_greedy if greedy else check_weighted)(params, prime_ids, check)
    return SampleRun(name, call, length)


# ---------------------------------------------------------------------------
# The tutorial's whole job: TrainConfig()'s defaults, on the bundled corpus


def _tutorial_corpus() -> tuple[rnnext.TrainConfig, rnnext.Corpus, rnnext.Vocabulary]:
    config = rnnext.TrainConfig()
    corpus, vocab = rnnext.load_corpus(
        rnnext.bundled_corpus_path(),
        config.rows,
        config.steps,
        val_fraction=config.val_fraction,
    )
    return config, corpus, vocab


class TrainerJob:
    """rnnext.Trainer with the tutorial's TrainConfig: its epochs of training,
    validation after each and a sample every 10, as `rnnext train` runs it.

    A call runs it (with max_feeds, only that many feeds) and returns the
    epochs' mean training losses, or the running loss if none finished.
    tokens counts training tokens only. The first step of the same model is
    checked against the oracle on construction.
    """

    def __init__(self, max_feeds: int | None = None):
        config, corpus, self.vocab = _tutorial_corpus()
        self.V = len(self.vocab)
        check_step(rnnext_impl(self.V, config.hidden_size), *corpus.feed(0))
        self.trainer = rnnext.Trainer(config, corpus, self.vocab)
        self.max_feeds = max_feeds
        F = corpus.feeds_per_epoch
        feeds = config.epochs * F if max_feeds is None else min(max_feeds, F)
        self.tokens = feeds * config.rows * config.steps
        self.name = f"rnnext Trainer, {config.epochs} epochs"

    def __call__(self) -> list[float]:
        rnnext.set_num_threads(THREADS)
        running: list[float] = []

        def on_event(event: Any) -> None:
            if isinstance(event, Progress):
                running.append(event.loss)

        self.trainer.train(on_event=on_event, max_feeds=self.max_feeds)
        return [e.train for e in self.trainer.history] or running[-1:]


class StepLoop:
    """The tutorial's training part as a plain loop of one step per feed, h_T
    carried and reset at each epoch; no validation or sampling.

    A call runs `epochs` epochs (each cut to max_feeds feeds if given) and
    returns their mean losses. The first step is checked against the
    oracle on construction, on a model of its own.
    """

    def __init__(self, impl: str, epochs: int, max_feeds: int | None = None):
        config, self.corpus, vocab = _tutorial_corpus()
        self.V, H, self.B = len(vocab), config.hidden_size, config.rows
        check_step(IMPLS[impl](self.V, H), *self.corpus.feed(0))
        self.impl = IMPLS[impl](self.V, H)
        self.name = f"{self.impl.name} step loop, {epochs} epochs"
        self.epochs = epochs
        F = self.corpus.feeds_per_epoch
        self.feeds = F if max_feeds is None else min(max_feeds, F)
        self.tokens = epochs * self.feeds * self.B * config.steps

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
    assert means, "the job reported no loss"
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
