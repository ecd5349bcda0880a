# Property tests: random shapes, dtypes, memory layouts, ids and values
# thrown at every Python entry point of the kernel (CharRNN, Adagrad and
# rnnext._core), at sampling, the vocabulary, the corpus and the checkpoint
# reader. Every case either matches the NumPy oracle (float64 to 1e-9) or
# raises TypeError/ValueError; none may crash or hang. Each fault found this
# way also has a plain regression test at the end of the file.
#
# B rows, T steps, H hidden, V vocabulary.
#
# RNNEXT_FUZZ=thorough runs 4000 cases a property instead of 100 (about ten
# minutes for the file instead of fifteen seconds).
import contextlib
import copy
import faulthandler
import importlib.util
import io
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnnext
from rnnext import reference as ref
from rnnext.model import PARAM_NAMES

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "rnnext-default", max_examples=100, deadline=None, suppress_health_check=_SLOW_OK
)
settings.register_profile(
    "rnnext-thorough", max_examples=4000, deadline=None, suppress_health_check=_SLOW_OK
)
_PROFILE = os.environ.get("RNNEXT_FUZZ", "default")
if _PROFILE not in ("default", "thorough"):
    raise ValueError(f"RNNEXT_FUZZ must be 'default' or 'thorough', got {_PROFILE!r}")
fuzz = settings(settings.get_profile(f"rnnext-{_PROFILE}"))

TOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 2e-4}
ERRORS = (TypeError, ValueError)
HANG_SECONDS = 300  # one example; generous for a sanitizer build

# every integer width, signed and unsigned (l and q are distinct dtypes)
INT_DTYPES = [np.dtype(c) for c in "bBhHiIlLqQ"] + [np.dtype(np.intp)]
FLOAT_DTYPES = [np.dtype(c) for c in ("f2", "f4", "f8", "g")]
NOT_INT_DTYPES = [
    np.dtype(c) for c in ("?", "f2", "f4", "f8", "c8", "c16", "O", "U1", "M8[s]")
] + [np.dtype([("a", "i4")])]
NOT_FLOAT_DTYPES = [np.dtype(c) for c in ("?", "i1", "u8", "i8", "c16", "O", "U1")]
# neither arrays nor sequences numpy turns into integer or float arrays
JUNK = [None, 0, 2.5, "ab", b"\x00\x01", {}, set(), object(), [], [[]], [[0], [1, 2]]]
NON_FINITE = [np.nan, np.inf, -np.inf, 1e-300, 0.0, -0.0]
# Huge finite values too; x + 1e30 - 1e30 makes the order of operations
# decide between 0 and x, so these are not compared with the oracle.
EXTREMES = [*NON_FINITE, 1e30, -1e30]
SCALES = (0.0, 1e-3, 0.3, 1.0, 3.0)
LAYOUTS = ["C", "F", "strided", "reversed", "readonly", "broadcast"]
PARAM_LAYOUTS = ["C", "F", "strided", "reversed", "readonly", "broadcast"]


@contextlib.contextmanager
def no_hang():
    """Ends the test run with every thread's traceback if a call hangs."""
    # sys.stderr may be pytest's capture, which has no file descriptor
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def lay_out(a, layout):
    """a in another memory layout; "broadcast" repeats its first entry."""
    a = np.asarray(a)
    if layout == "C" or a.ndim == 0:
        return np.ascontiguousarray(a)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        big = np.zeros(tuple(2 * n + 1 for n in a.shape), dtype=a.dtype)
        view = big[(slice(1, None, 2),) * a.ndim]
        view[...] = a
        return view
    if layout == "reversed":
        flipped = np.flip(a).copy()
        return np.flip(flipped)
    if layout == "readonly":
        r = a.copy()
        r.flags.writeable = False
        return r
    if layout == "broadcast":
        return np.broadcast_to(a[(slice(0, 1),) * a.ndim], a.shape)
    raise AssertionError(layout)


def rng_of(data):
    return np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))


def draw_sizes(data, max_B=20):
    V = data.draw(st.integers(1, 40), label="V")
    H = data.draw(st.integers(1, 40), label="H")
    B = data.draw(st.integers(1, max_B), label="B")
    T = data.draw(st.integers(1, 8), label="T")
    return V, H, B, T


def draw_ids(data, V, shape):
    """Valid ids (B, T) in [0, V) of any integer dtype and layout."""
    dt = data.draw(st.sampled_from([d for d in INT_DTYPES if np.iinfo(d).max >= V - 1]))
    a = rng_of(data).integers(0, V, size=shape).astype(dt)
    return lay_out(a, data.draw(st.sampled_from(LAYOUTS), label="ids layout"))


def draw_floats(data, shape, dtype, *, extreme=(), scales=SCALES):
    """Uniform values of a random scale, with a few of `extreme` put in."""
    rng = rng_of(data)
    scale = data.draw(st.sampled_from(scales), label="scale")
    a = rng.uniform(-scale, scale, size=shape)
    if extreme and a.size:
        for _ in range(data.draw(st.integers(1, 3), label="extremes")):
            a.flat[rng.integers(a.size)] = data.draw(st.sampled_from(extreme))
    with np.errstate(over="ignore"):  # 1e30 is infinite in float16
        return a.astype(dtype)


def weight_scales(dtype, name, H):
    """Scales of random weights.

    Each step multiplies the rounding error of the state by up to the norm
    of W_hidden, about its scale * sqrt(H): larger ones make the recurrence
    chaotic, where no two orders of summation agree to 1e-9. Its scale is
    therefore given in units of the initial 1/sqrt(H), up to twice that.
    Float32 keeps the other weights small too.
    """
    f32 = np.dtype(dtype) == np.float32
    if name == "W_hidden":
        return tuple(
            m / math.sqrt(H) for m in (0.0, 1e-3, 0.3, 1.0, 1.0 if f32 else 2.0)
        )
    if f32 and name.startswith("W"):
        return (0.0, 1e-3, 0.1, 0.3)
    return SCALES


def draw_model(data, V, H, dtype, *, extreme=(), layouts=PARAM_LAYOUTS):
    model = rnnext.CharRNN(V, H, dtype=dtype)
    for name, a in model.params.items():
        scales = weight_scales(dtype, name, H)
        values = draw_floats(data, a.shape, dtype, extreme=extreme, scales=scales)
        layout = data.draw(st.sampled_from(layouts), label=f"{name} layout")
        model.params[name] = lay_out(values, layout)
    return model


def draw_h0(data, B, H, *, extreme=()):
    dt = data.draw(st.sampled_from(FLOAT_DTYPES), label="h0 dtype")
    h0 = lay_out(draw_floats(data, (B, H), dt, extreme=extreme), "C")
    return lay_out(h0, data.draw(st.sampled_from(LAYOUTS), label="h0 layout"))


def oracle_params(params, dtype):
    """The params rounded to the kernel's dtype, then widened to float64."""
    return {k: np.asarray(params[k], dtype).astype(np.float64) for k in PARAM_NAMES}


def oracle_state(h0, dtype):
    return np.asarray(h0, dtype).astype(np.float64)


def oracle_ids(a):
    return np.asarray(a).astype(np.int64)


def assert_close(actual, expected, tol, what, floor=1.0):
    """Finite in the same places, and there within tol of the largest entry.

    Entries are compared relative to the largest magnitude, but never to
    less than `floor`: 1 for losses (nats), states and weights, tiny for
    gradients, whose size depends on B*T. Where both are not finite, inf and
    nan count as one: which one arises depends on the order of operations.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape}, expected {e.shape}"
    finite = np.isfinite(e)
    bad = np.isfinite(a) != finite
    assert not bad.any(), (
        f"{what}: finite where the oracle is not, or the reverse, at "
        f"{np.argwhere(bad)[:5].tolist()}: {a[bad][:5]} vs {e[bad][:5]}"
    )
    if finite.any():
        scale = max(np.abs(e[finite]).max(), np.abs(a[finite]).max(), floor, 1e-300)
        diff = np.abs(a[finite] - e[finite]).max()
        assert diff <= tol * scale, (
            f"{what}: max diff {diff:.3e} > tolerance {tol:.0e} * {scale:.3e}"
        )


def grad_floor(grads, dtype=np.float64):
    """The largest finite entry of all gradients: cancellation leaves noise
    of that order times the rounding error in any one of them. Never below
    what the rounding of terms of size 1/(B*T) leaves in the dtype: with one
    row, one step and one character, every gradient is 0 but for rounding,
    and their norm reached 1e-15 in float64 (tolerance times floor: 1e-14)."""
    finite = [np.abs(g[np.isfinite(g)]).max(initial=0.0) for g in grads.values()]
    return max(*finite, 1e-5 if np.dtype(dtype) == np.float64 else 1e-3)


def grad_norm(grads):
    with np.errstate(all="ignore"):
        return math.sqrt(sum(float(np.sum(grads[k] ** 2)) for k in PARAM_NAMES))


# -- the validity rules of the contract, written independently of the code


def as_input(obj):
    """What CharRNN does with a non-array argument; None if numpy refuses."""
    try:
        return obj if isinstance(obj, np.ndarray) else np.asarray(obj)
    except ERRORS:  # e.g. ragged lists
        return None


def ids_valid(a, V):
    return (
        isinstance(a, np.ndarray)
        and a.dtype.kind in "iu"
        and a.ndim == 2
        and min(a.shape) >= 1
        and a.min() >= 0
        and a.max() < V
    )


def state_valid(h, B, H):
    return isinstance(h, np.ndarray) and h.dtype.kind == "f" and h.shape == (B, H)


def call_valid(X, Y, h0, V, H):
    return (
        ids_valid(X, V)
        and ids_valid(Y, V)
        and X.shape == Y.shape
        and state_valid(h0, X.shape[0], H)
    )


def corrupt_ids(data, a, V):
    """a spoilt in one way the kernel must refuse, or left alone."""
    how = data.draw(
        st.sampled_from(
            ["keep", "dtype", "value", "ndim", "empty", "junk", "list", "shorter"]
        ),
        label="ids fault",
    )
    if how == "dtype":
        dt = data.draw(st.sampled_from(NOT_INT_DTYPES))
        return np.zeros(a.shape, dtype=dt) if dt.kind in "UMV" else a.astype(dt)
    if how == "value":
        bad = data.draw(
            st.sampled_from([-1, -128, V, V + 1, 255, 2**31 - 1, 2**31, 2**63 - 1])
        )
        dts = [d for d in INT_DTYPES if np.iinfo(d).min <= bad <= np.iinfo(d).max]
        b = np.array(a, dtype=data.draw(st.sampled_from(dts)))
        b[tuple(data.draw(st.integers(0, n - 1)) for n in b.shape)] = bad
        return b
    if how == "ndim":
        return data.draw(st.sampled_from([a.ravel(), a[..., None], a[0, 0]]))
    if how == "empty":
        return data.draw(st.sampled_from([a[:0], a[:, :0], a[:0, :0]]))
    if how == "junk":
        return data.draw(st.sampled_from(JUNK))
    if how == "list":
        return a.tolist()
    if how == "shorter":
        return a[:, :-1] if a.shape[1] > 1 else a[:-1]
    return a


def corrupt_state(data, h, B, H):
    how = data.draw(
        st.sampled_from(["keep", "dtype", "shape", "junk", "list"]), label="h0 fault"
    )
    if how == "dtype":
        dt = data.draw(st.sampled_from(NOT_FLOAT_DTYPES))
        return np.zeros(h.shape, dtype=dt)
    if how == "shape":
        shape = data.draw(
            st.sampled_from([(B, H + 1), (B + 1, H), (H, B), (B * H,), (1, B, H), ()])
        )
        return np.zeros(shape)
    if how == "junk":
        return data.draw(st.sampled_from(JUNK))
    if how == "list":
        return h.tolist()
    return h


# -- CharRNN and Adagrad: valid inputs against the oracle


@fuzz
@given(st.data())
def test_model_evaluate_and_gradients_match_the_oracle(data):
    V, H, B, T = draw_sizes(data)
    dtype = np.dtype(data.draw(st.sampled_from([np.float64, np.float32])))
    model = draw_model(data, V, H, dtype)
    X, Y = draw_ids(data, V, (B, T)), draw_ids(data, V, (B, T))
    h0 = draw_h0(data, B, H)
    P, h = oracle_params(model.params, dtype), oracle_state(h0, dtype)
    tol = TOL[dtype]

    with no_hang():
        if data.draw(st.booleans(), label="evaluate"):
            loss, hT = model.evaluate(X, Y, h0)
            want_loss, want_hT = ref.evaluate(P, oracle_ids(X), oracle_ids(Y), h)
        else:
            loss, grads, hT = model.loss_and_grads(X, Y, h0)
            want_loss, want, want_hT = ref.loss_and_grads(
                P, oracle_ids(X), oracle_ids(Y), h
            )
            assert list(grads) == [*PARAM_NAMES, "h0"]
            floor = grad_floor(want, dtype)
            for k, g in grads.items():
                assert g.dtype == dtype, k
                assert_close(g, want[k], tol, f"d{k}", floor=floor)
    assert isinstance(loss, float)
    assert hT.dtype == dtype and hT.shape == (B, H)
    assert_close(loss, want_loss, tol, "loss")
    assert_close(hT, want_hT, tol, "h_T")


def draw_optimizer(data, model):
    # An update is about lr * g / sqrt(initial_accumulator) while g is small,
    # so lr=1 with 1e-3 multiplies float32 rounding by 30 at every step.
    f32 = model.dtype == np.float32
    inits = [0.1, 1.0] if f32 else [1e-3, 0.1, 1.0]
    init = data.draw(st.sampled_from(inits), label="initial_accumulator")
    lr = data.draw(
        st.sampled_from([1e-3, 0.1] if f32 else [1e-3, 0.1, 1.0]), label="lr"
    )
    eps = data.draw(st.sampled_from([0.0, 1e-10, 1e-3]), label="eps")
    clip = data.draw(st.sampled_from(["none", "clip", "clip_norm"]), label="clip")
    bound = data.draw(st.sampled_from([1e-3, 0.05, 1.0, 100.0]), label="bound")
    return rnnext.Adagrad(
        model,
        lr=lr,
        initial_accumulator=init,
        eps=eps,
        clip=bound if clip == "clip" else None,
        clip_norm=bound if clip == "clip_norm" else None,
    )


def oracle_step(P, A, opt, X, Y, h):
    return ref.step(
        P, A, X, Y, h, lr=opt.lr, eps=opt.eps, clip=opt.clip, clip_norm=opt.clip_norm
    )


@fuzz
@given(st.data())
def test_adagrad_step_matches_the_oracle(data):
    V, H, B, T = draw_sizes(data)
    dtype = np.dtype(data.draw(st.sampled_from([np.float64, np.float32])))
    model = draw_model(data, V, H, dtype, layouts=["C"])
    opt = draw_optimizer(data, model)
    X, Y = draw_ids(data, V, (B, T)), draw_ids(data, V, (B, T))
    h0 = draw_h0(data, B, H)
    P, h = oracle_params(model.params, dtype), oracle_state(h0, dtype)
    A = oracle_params(opt.accumulators, dtype)
    _, grads, _ = ref.loss_and_grads(P, oracle_ids(X), oracle_ids(Y), h)
    tol = TOL[dtype]

    with no_hang():
        loss, hT = opt.step(X, Y, h0)
    want_loss, want_hT = oracle_step(P, A, opt, oracle_ids(X), oracle_ids(Y), h)
    assert opt.updated
    assert_close(loss, want_loss, tol, "loss")
    assert_close(hT, want_hT, tol, "h_T")
    assert_close(opt.grad_norm, grad_norm(grads), tol, "|g|", grad_floor(grads, dtype))
    for k in PARAM_NAMES:
        assert_close(model.params[k], P[k], tol, k)
        assert_close(opt.accumulators[k], A[k], tol, f"accumulator of {k}")


@fuzz
@given(st.data())
def test_adagrad_steps_match_the_oracle_feed_by_feed(data):
    V, H, B, T = draw_sizes(data, max_B=12)
    dtype = np.dtype(data.draw(st.sampled_from([np.float64, np.float32])))
    model = draw_model(data, V, H, dtype, layouts=["C"])
    opt = draw_optimizer(data, model)
    start = data.draw(st.integers(0, 3), label="start")
    count = data.draw(st.integers(1, 4), label="count")
    L = (start + count) * T + data.draw(st.integers(0, 2 * T), label="extra columns")
    rows = draw_ids(data, V, (B, L + 1))
    h0 = draw_h0(data, B, H)
    P, h = oracle_params(model.params, dtype), oracle_state(h0, dtype)
    A = oracle_params(opt.accumulators, dtype)
    R = oracle_ids(rows)
    tol = TOL[dtype] * count  # each update feeds its rounding to the next feed

    with no_hang():
        losses, hT = opt.steps(rows, T, start, count, h0)
    assert losses.dtype == np.float64 and losses.shape == (count,)
    for k in range(count):
        c = (start + k) * T
        want, h = oracle_step(P, A, opt, R[:, c : c + T], R[:, c + 1 : c + T + 1], h)
        assert_close(losses[k], want, tol, f"loss of feed {start + k}")
    assert_close(hT, h, tol, "h_T")
    for k in PARAM_NAMES:
        assert_close(model.params[k], P[k], tol, k)
        assert_close(opt.accumulators[k], A[k], tol, f"accumulator of {k}")


# -- NaN, infinity and huge values in the parameters and the state


@fuzz
@given(st.data())
def test_non_finite_values_propagate_as_in_the_oracle(data):
    V, H, B, T = draw_sizes(data)
    model = draw_model(data, V, H, np.float64, extreme=NON_FINITE)
    X, Y = draw_ids(data, V, (B, T)), draw_ids(data, V, (B, T))
    h0 = draw_h0(data, B, H, extreme=data.draw(st.sampled_from([(), NON_FINITE])))
    P, h = oracle_params(model.params, np.float64), oracle_state(h0, np.float64)
    with np.errstate(all="ignore"):
        want_loss, want, want_hT = ref.loss_and_grads(
            P, oracle_ids(X), oracle_ids(Y), h
        )

    with no_hang():
        loss, grads, hT = model.loss_and_grads(X, Y, h0)
        loss_e, hT_e = model.evaluate(X, Y, h0)
    assert_close(loss, want_loss, 1e-9, "loss")
    assert_close(loss_e, want_loss, 1e-9, "loss (evaluate)")
    assert_close(hT, want_hT, 1e-9, "h_T")
    assert_close(hT_e, want_hT, 1e-9, "h_T (evaluate)")
    for k, g in grads.items():
        assert_close(g, want[k], 1e-9, f"d{k}", floor=grad_floor(want))


@fuzz
@given(st.data())
def test_a_step_that_is_not_finite_changes_nothing(data):
    V, H, B, T = draw_sizes(data)
    dtype = np.dtype(data.draw(st.sampled_from([np.float64, np.float32])))
    model = draw_model(data, V, H, dtype, extreme=EXTREMES, layouts=["C"])
    opt = draw_optimizer(data, model)
    X, Y = draw_ids(data, V, (B, T)), draw_ids(data, V, (B, T))
    h0 = draw_h0(data, B, H, extreme=data.draw(st.sampled_from([(), EXTREMES])))
    before = {k: a.copy() for k, a in model.params.items()}
    accums = {k: a.copy() for k, a in opt.accumulators.items()}

    with no_hang():
        loss, hT = opt.step(X, Y, h0)
    if not opt.updated:
        for k in PARAM_NAMES:
            assert np.array_equal(model.params[k], before[k], equal_nan=True), k
            assert np.array_equal(opt.accumulators[k], accums[k]), k
    if not (math.isfinite(loss) and math.isfinite(opt.grad_norm)):
        assert not opt.updated
        return

    # a finite step is applied unless a new weight or accumulator would not
    # be finite (the oracle here works in the model's dtype, as the kernel)
    with np.errstate(all="ignore"):
        P = {k: a.copy() for k, a in before.items()}
        A = {k: a.copy() for k, a in accums.items()}
        h = np.asarray(h0, dtype)
        oracle_step(P, A, opt, oracle_ids(X), oracle_ids(Y), h)
    finite = all(np.isfinite(P[k]).all() and np.isfinite(A[k]).all() for k in P)
    assert opt.updated == finite
    for k in PARAM_NAMES:
        assert np.isfinite(model.params[k]).all() or not opt.updated, k


# -- CharRNN and Adagrad: anything at all for X, Y, h0 and the params


@fuzz
@given(st.data())
def test_model_calls_with_any_arguments_match_or_raise(data):
    V, H, B, T = draw_sizes(data, max_B=10)
    kind = data.draw(st.sampled_from(["evaluate", "loss_and_grads", "step"]))
    model = draw_model(
        data, V, H, np.float64, layouts=["C"] if kind == "step" else PARAM_LAYOUTS
    )
    X = corrupt_ids(data, draw_ids(data, V, (B, T)), V)
    Y = corrupt_ids(data, draw_ids(data, V, (B, T)), V)
    h0 = corrupt_state(data, draw_h0(data, B, H), B, H)
    x, y, h = as_input(X), as_input(Y), as_input(h0)
    valid = call_valid(x, y, h, V, H)

    call = rnnext.Adagrad(model).step if kind == "step" else getattr(model, kind)
    P = oracle_params(model.params, np.float64)
    with no_hang():
        if not valid:
            with pytest.raises(ERRORS):
                call(X, Y, h0)
            return
        out = call(X, Y, h0)
    want = ref.evaluate(P, oracle_ids(x), oracle_ids(y), oracle_state(h, np.float64))
    assert_close(out[0], want[0], 1e-9, "loss")
    assert_close(out[-1], want[1], 1e-9, "h_T")


def corrupt_param(data, a, dtype):
    """A replacement for one model parameter, and whether a step takes it."""
    how = data.draw(
        st.sampled_from(
            ["dtype", "shape", "junk", "list", "strided", "nan", "missing"]
        ),
        label="param fault",
    )
    if how == "dtype":
        other = data.draw(st.sampled_from([np.float16, np.float32, np.int64, complex]))
        if np.dtype(other) == dtype:
            other = np.float16
        return a.astype(other)
    if how == "shape":
        return data.draw(st.sampled_from([a[:-1], a[None], a.ravel()[:1], a.T.copy()]))
    if how == "junk":
        return data.draw(st.sampled_from(JUNK))
    if how == "list":
        return a.tolist()
    if how == "strided":
        return lay_out(a, how)
    if how == "nan":
        b = a.copy()
        b.flat[0] = np.nan
        return b
    return "missing"


@fuzz
@given(st.data())
def test_model_with_corrupt_params_or_options_raises_or_matches(data):
    V, H, B, T = draw_sizes(data, max_B=10)
    dtype = np.dtype(data.draw(st.sampled_from([np.float64, np.float32])))
    model = draw_model(data, V, H, dtype, layouts=["C"])
    opt = rnnext.Adagrad(model)
    name = data.draw(st.sampled_from(PARAM_NAMES))
    bad = corrupt_param(data, model.params[name], dtype)
    if isinstance(bad, str):
        del model.params[name]
    else:
        model.params[name] = bad
    option = data.draw(st.sampled_from(["lr", "eps", "clip", "clip_norm", None]))
    if option:
        value = data.draw(st.sampled_from([-1.0, 0.0, np.nan, np.inf, "x", True, 0.5]))
        setattr(opt, option, value)
    X, Y = draw_ids(data, V, (B, T)), draw_ids(data, V, (B, T))
    h0 = draw_h0(data, B, H)
    kind = data.draw(st.sampled_from(["evaluate", "loss_and_grads", "step"]))

    shape = {"W_input": (V, H), "W_hidden": (H, H), "b_hidden": (H,)}.get(
        name, (H, V) if name == "W_softmax" else (V,)
    )
    usable = isinstance(bad, np.ndarray) and bad.dtype == dtype and bad.shape == shape
    if kind == "step":
        usable = usable and bad.flags.c_contiguous and bad.flags.writeable
        # step checks every option again: a finite number, > 0 except eps,
        # which may be 0; a bool is not a number
        usable = usable and (
            option is None
            or (value is not True and value == 0.5)
            or (option == "eps" and value is not True and value == 0.0)
        )
    call = opt.step if kind == "step" else getattr(model, kind)
    with no_hang():
        if not usable:
            errors = (*ERRORS, KeyError) if isinstance(bad, str) else ERRORS
            with pytest.raises(errors):
                call(X, Y, h0)
            return
        out = call(X, Y, h0)
    P = oracle_params(model.params, dtype) if kind != "step" else None
    if P is not None:
        want = ref.evaluate(P, oracle_ids(X), oracle_ids(Y), oracle_state(h0, dtype))
        assert_close(out[0], want[0], TOL[dtype], "loss")


# -- rnnext._core directly: any tuple, any arrays, any options


def draw_core_params(data, V, H, dtype, *, in_place):
    """Five parameter arrays for _core, some of other float dtypes."""
    shapes = [(V, H), (H, H), (H,), (H, V), (V,)]
    out = []
    for k, shape in enumerate(shapes):
        dt = dtype
        if k > 0 and not in_place and data.draw(st.booleans(), label="other dtype"):
            dt = data.draw(st.sampled_from(FLOAT_DTYPES))
        layout = "C" if in_place else data.draw(st.sampled_from(PARAM_LAYOUTS))
        scales = weight_scales(dtype, PARAM_NAMES[k], H)
        out.append(lay_out(draw_floats(data, shape, dt, scales=scales), layout))
    return out


def corrupt_tuple(data, arrays):
    """The parameter (or accumulator) sequence, maybe spoilt."""
    how = data.draw(
        st.sampled_from(["keep", "list", "short", "long", "junk item", "dtype"]),
        label="tuple fault",
    )
    if how == "list":
        return list(arrays)
    if how == "short":
        return tuple(arrays[: data.draw(st.integers(0, 4))])
    if how == "long":
        return (*arrays, arrays[0])
    if how == "junk item":
        k = data.draw(st.integers(0, 4))
        return (*arrays[:k], data.draw(st.sampled_from(JUNK)), *arrays[k + 1 :])
    if how == "dtype":
        k = data.draw(st.integers(0, 4))
        bad = np.zeros(arrays[k].shape, data.draw(st.sampled_from(NOT_FLOAT_DTYPES)))
        return (*arrays[:k], bad, *arrays[k + 1 :])
    return tuple(arrays)


def core_params_valid(p, V, H, *, in_place, dtype=None):
    if type(p) is not tuple or len(p) != 5:
        return False
    if not all(isinstance(a, np.ndarray) for a in p):
        return False
    dtype = p[0].dtype if dtype is None else dtype
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        return False
    shapes = [(V, H), (H, H), (H,), (H, V), (V,)]
    for a, shape in zip(p, shapes):
        if a.dtype.kind != "f" or a.shape != shape:
            return False
        if in_place and not (
            a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
        ):
            return False
    return True


def draw_threads(data):
    return data.draw(
        st.one_of(
            st.integers(1, 5),
            st.sampled_from([0, -1, 2**31, 1.5, None, "2", np.int64(2), True]),
        ),
        label="num_threads",
    )


def threads_valid(n):
    try:
        return not isinstance(n, float) and 1 <= n.__index__() < 2**31
    except AttributeError:
        return False


@fuzz
@given(st.data())
def test_core_evaluate_and_gradients_match_or_raise(data):
    V, H, B, T = draw_sizes(data, max_B=12)
    dtype = np.dtype(data.draw(st.sampled_from([np.float64, np.float32])))
    p = corrupt_tuple(data, draw_core_params(data, V, H, dtype, in_place=False))
    X = corrupt_ids(data, draw_ids(data, V, (B, T)), V)
    Y = corrupt_ids(data, draw_ids(data, V, (B, T)), V)
    h0 = corrupt_state(data, draw_h0(data, B, H), B, H)
    n = draw_threads(data)
    valid = (
        core_params_valid(p, V, H, in_place=False)
        and call_valid(X, Y, h0, V, H)
        and threads_valid(n)
    )
    grads = data.draw(st.booleans(), label="gradients")
    call = rnnext._core.loss_and_grads if grads else rnnext._core.evaluate
    with no_hang():
        if not valid:
            with pytest.raises(ERRORS):
                call(p, X, Y, h0, n)
            return
        out = call(p, X, Y, h0, n)
    P = oracle_params(dict(zip(PARAM_NAMES, p)), dtype)
    want = ref.loss_and_grads(P, oracle_ids(X), oracle_ids(Y), oracle_state(h0, dtype))
    assert_close(out[0], want[0], TOL[dtype], "loss")
    assert_close(out[-1], want[2], TOL[dtype], "h_T")
    if grads:
        for k, g in zip((*PARAM_NAMES, "h0"), out[1]):
            assert g.dtype == dtype
            assert_close(
                g, want[1][k], TOL[dtype], f"d{k}", floor=grad_floor(want[1], dtype)
            )


def draw_option(data, name):
    return data.draw(
        st.one_of(
            st.sampled_from([0.0, 1e-3, 0.1, 1.0]),
            st.sampled_from([-1.0, np.nan, np.inf, -np.inf, "1", None, 1e30]),
        ),
        label=name,
    )


def option_valid(x, positive):
    if not isinstance(x, (int, float)) or isinstance(x, str):
        return False
    return math.isfinite(x) and x >= 0 and (x > 0 or not positive)


@fuzz
@given(st.data())
def test_core_adagrad_step_matches_or_raises(data):
    V, H, B, T = draw_sizes(data, max_B=12)
    dtype = np.dtype(data.draw(st.sampled_from([np.float64, np.float32])))
    p = draw_core_params(data, V, H, dtype, in_place=True)
    a = [np.full_like(w, 0.1) for w in p]
    if data.draw(st.booleans(), label="spoil a param"):
        k = data.draw(st.integers(0, 4))
        p[k] = lay_out(p[k], data.draw(st.sampled_from(LAYOUTS)))
    if data.draw(st.booleans(), label="spoil an accumulator"):
        k = data.draw(st.integers(0, 4))
        a[k] = lay_out(a[k], data.draw(st.sampled_from(LAYOUTS)))
    p, a = corrupt_tuple(data, p), corrupt_tuple(data, a)
    X = corrupt_ids(data, draw_ids(data, V, (B, T)), V)
    Y = corrupt_ids(data, draw_ids(data, V, (B, T)), V)
    h0 = corrupt_state(data, draw_h0(data, B, H), B, H)
    lr, eps, clip, clip_norm = (
        draw_option(data, n) for n in ("lr", "eps", "clip", "clip_norm")
    )
    n = draw_threads(data)
    valid = (
        core_params_valid(p, V, H, in_place=True)
        and core_params_valid(a, V, H, in_place=True, dtype=p[0].dtype)
        and call_valid(X, Y, h0, V, H)
        and option_valid(lr, True)
        and option_valid(eps, False)
        and option_valid(clip, False)
        and option_valid(clip_norm, False)
        and not (clip and clip_norm)
        and threads_valid(n)
    )
    if valid:
        P = oracle_params(dict(zip(PARAM_NAMES, p)), dtype)
        A = oracle_params(dict(zip(PARAM_NAMES, a)), dtype)
    before = [w.copy() if isinstance(w, np.ndarray) else w for w in p]
    with no_hang():
        if not valid:
            with pytest.raises(ERRORS):
                rnnext._core.adagrad_step(p, a, X, Y, h0, lr, eps, clip, clip_norm, n)
            # a refused call changes nothing
            for w, w0 in zip(p, before):
                if isinstance(w, np.ndarray) and w.dtype.kind == "f":
                    assert np.array_equal(w, w0, equal_nan=True)
            return
        loss, hT, norm, updated = rnnext._core.adagrad_step(
            p, a, X, Y, h0, lr, eps, clip, clip_norm, n
        )
    want, want_hT = ref.step(
        P,
        A,
        oracle_ids(X),
        oracle_ids(Y),
        oracle_state(h0, dtype),
        lr=lr,
        eps=eps,
        clip=clip or None,
        clip_norm=clip_norm or None,
    )
    assert updated
    assert_close(loss, want, TOL[dtype], "loss")
    assert_close(hT, want_hT, TOL[dtype], "h_T")
    for k, w in zip(PARAM_NAMES, p):
        assert_close(w, P[k], TOL[dtype], k)


@fuzz
@given(st.data())
def test_adagrad_steps_with_any_window_matches_or_raises(data):
    V, H, B, T = draw_sizes(data, max_B=8)
    model = draw_model(data, V, H, np.float64, layouts=["C"])
    opt = rnnext.Adagrad(model)
    L = data.draw(st.integers(0, 40), label="L")
    rows = corrupt_ids(data, draw_ids(data, V, (B, L + 1)), V)
    sizes = st.one_of(st.integers(-3, 45), st.just(2**20), st.just(2**62))
    steps = data.draw(sizes, label="steps")
    start = data.draw(sizes, label="start")
    count = data.draw(sizes, label="count")
    h0 = corrupt_state(data, draw_h0(data, B, H), B, H)

    r, h = as_input(rows), as_input(h0)
    valid = (
        isinstance(r, np.ndarray)
        and r.dtype.kind in "iu"
        and r.ndim == 2
        and min(r.shape) >= 1
        and state_valid(h, r.shape[0], H)
        and steps >= 1
        and start >= 0
        and count >= 1
        and (start + count) * steps + 1 <= r.shape[1]
        # only the columns the feeds read are checked
        and ids_valid(r[:, start * steps : (start + count) * steps + 1], V)
    )
    P = oracle_params(model.params, np.float64)
    A = oracle_params(opt.accumulators, np.float64)
    with no_hang():
        if not valid:
            with pytest.raises(ERRORS):
                opt.steps(rows, steps, start, count, h0)
            return
        losses, hT = opt.steps(rows, steps, start, count, h0)
    R, state = oracle_ids(r), oracle_state(h, np.float64)
    for k in range(count):
        c = (start + k) * steps
        want, state = oracle_step(
            P, A, opt, R[:, c : c + steps], R[:, c + 1 : c + steps + 1], state
        )
        assert_close(losses[k], want, 1e-9, f"loss of feed {start + k}")
    assert_close(hT, state, 1e-9, "h_T")


# -- sampling


def replay_logits(P, prime, out):
    """The logits (float64) before each id of `out`, along its own path."""
    h = np.zeros(P["W_hidden"].shape[0])

    def advance(h, x):
        return np.tanh(P["W_input"][x] + h @ P["W_hidden"] + P["b_hidden"])

    for x in prime:
        h = advance(h, x)
    logits = []
    for x in out:
        logits.append(h @ P["W_softmax"] + P["b_softmax"])
        h = advance(h, x)
    return np.array(logits)


@pytest.mark.skipif(not hasattr(rnnext._core, "sample"), reason="no _core.sample")
@fuzz
@given(st.data())
def test_core_sample_draws_valid_ids_or_raises(data):
    V, H, _, _ = draw_sizes(data)
    dtype = np.dtype(data.draw(st.sampled_from([np.float64, np.float32])))
    p = [lay_out(a, "C") for a in draw_core_params(data, V, H, dtype, in_place=True)]
    if data.draw(st.booleans(), label="spoil a param"):
        k = data.draw(st.integers(0, 4))
        p[k] = data.draw(
            st.sampled_from(
                [
                    p[k].astype(np.float16),
                    p[k][:1],
                    np.full_like(p[k], np.nan),
                    lay_out(p[k], "strided"),
                ]
            )
        )
    prime = draw_ids(data, V, (1, data.draw(st.integers(1, 5))))[0]
    prime = data.draw(
        st.sampled_from(
            [prime, prime[:0], prime[None], prime.astype(np.float64), prime + V]
        ),
        label="prime",
    )
    length = data.draw(st.sampled_from([1, 2, 17, 0, -1]), label="length")
    temperature = data.draw(
        st.sampled_from([1.0, 0.3, 2.5, 1e-3, 0.0, -1.0, np.nan, np.inf])
    )
    greedy = data.draw(st.booleans(), label="greedy")
    top_k = data.draw(st.sampled_from([0, 1, 2, V, V + 1, -1]), label="top_k")
    seed = data.draw(st.sampled_from([0, 1, 2**64 - 1, 2**64, -1]), label="seed")
    num = data.draw(st.sampled_from([1, 3, 0, -2]), label="num")
    threads = data.draw(st.sampled_from([0, 1, 3, -1]), label="num_threads")

    valid = (
        core_params_valid(tuple(p), V, H, in_place=False)
        and all(a.dtype == p[0].dtype for a in p)
        and all(np.isfinite(a).all() for a in p)
        and prime.ndim == 1
        and prime.size >= 1
        and prime.dtype.kind in "iu"
        and prime.min() >= 0
        and prime.max() < V
        and length >= 1
        and math.isfinite(temperature)
        and temperature > 0
        and 0 <= top_k <= V
        and 0 <= seed < 2**64
        and num >= 1
        and threads >= 0
    )
    args = (*p, prime, length, temperature, greedy, top_k, seed, num)
    with no_hang():
        if not valid:
            with pytest.raises(ERRORS):
                rnnext._core.sample(*args, threads)
            return
        out = rnnext._core.sample(*args, threads)
        again = rnnext._core.sample(*args, 1 if threads != 1 else 3)
    assert out.dtype == np.int32 and out.shape == (num, length)
    assert ((out >= 0) & (out < V)).all()
    assert np.array_equal(out, again), "depends on num_threads or is not repeatable"

    # each id is the argmax (greedy) or among the top_k logits, up to rounding
    P = oracle_params(dict(zip(PARAM_NAMES, p)), dtype)
    tol = 1e-9 if dtype == np.float64 else 1e-4
    k = 1 if greedy else top_k
    for row in out:
        logits = replay_logits(P, oracle_ids(prime), row)
        chosen = logits[np.arange(length), row]
        if k:
            kth = np.sort(logits, axis=1)[:, -k]
            slack = tol * np.maximum(1.0, np.abs(logits).max(axis=1))
            assert (chosen >= kth - slack).all(), (
                f"an id outside the top {k}: {chosen} vs {kth}"
            )
    if greedy or top_k == 1:
        assert (out == out[0]).all(), "greedy streams differ"


@pytest.mark.skipif(not hasattr(rnnext, "sample"), reason="no rnnext.sample")
@fuzz
@given(st.data())
def test_sample_gives_prime_plus_length_characters_or_raises(data):
    text = data.draw(st.text(min_size=1, max_size=30), label="text")
    vocab = rnnext.Vocabulary.from_text(text)
    model = rnnext.CharRNN(len(vocab), data.draw(st.integers(1, 8)), seed=1)
    prime = data.draw(st.text(alphabet=text, max_size=5) | st.text(max_size=3))
    length = data.draw(st.sampled_from([1, 5, 0, -1]), label="length")
    num = data.draw(st.sampled_from([1, 2, 0]), label="num")
    greedy = data.draw(st.booleans(), label="greedy")
    known = set(prime) <= set(vocab.chars)
    with no_hang():
        try:
            out = rnnext.sample(
                model, vocab, prime, length, greedy=greedy, num=num, seed=3
            )
        except ERRORS:
            assert not (known and prime and length >= 1 and num >= 1)
            return
    assert known and len(out) == num
    for s in out:
        assert s.startswith(prime) and len(s) == len(prime) + length
        assert set(s) <= set(vocab.chars)


# -- the vocabulary and the text reader

# lone surrogates included, which st.text leaves out
code_points = st.lists(st.integers(0, 0x10FFFF), min_size=1, max_size=80)
raw_text = code_points.map(lambda c: "".join(map(chr, c)))
any_text = st.one_of(st.text(min_size=1), raw_text)


@fuzz
@given(any_text, st.one_of(st.text(), raw_text))
def test_vocabulary_round_trips_and_refuses_unknown_characters(text, other):
    v = rnnext.Vocabulary.from_text(text)
    assert v.chars == "".join(sorted(set(text))) and len(v) == len(set(text))
    ids = v.encode(text)
    assert ids.ndim == 1 and ids.size == len(text)
    assert ids.dtype == np.dtype(np.uint8 if len(v) <= 256 else np.uint16)
    assert v.decode(ids) == text
    assert v.decode(ids.astype(np.int64)) == text
    assert [v.chars[i] for i in ids] == list(text)
    for w in (
        rnnext.Vocabulary(v.chars),
        rnnext.Vocabulary.from_array(v.to_array()),
        pickle.loads(pickle.dumps(v)),
        copy.deepcopy(v),
    ):
        assert w == v and hash(w) == hash(v) and w.decode(ids) == text

    if set(other) <= set(v.chars):
        assert v.decode(v.encode(other)) == other
    else:
        with pytest.raises(ValueError, match="not in the vocabulary"):
            v.encode(other)


@fuzz
@given(any_text, st.data())
def test_vocabulary_refuses_bad_ids_and_arguments(text, data):
    v = rnnext.Vocabulary.from_text(text)
    n = len(v)
    bad = data.draw(
        st.sampled_from(
            [
                np.array([n]),
                np.array([-1]),
                np.array([0, 2**63 - 1]),
                np.array([2**64 - 1], dtype=np.uint64),
                np.array([[0]]),
                np.array(0),
                np.array([0.0]),
                np.array([True]),
                np.array(["a"]),
                np.array([0], dtype=object),
                [[0, 1]],
            ]
        )
    )
    with pytest.raises(ERRORS):
        v.decode(bad)
    junk = data.draw(st.sampled_from([None, 1, b"a", ["a"], np.array(["a"])]))
    for call in (v.encode, rnnext.Vocabulary, rnnext.Vocabulary.from_text):
        with pytest.raises(TypeError):
            call(junk)
    with pytest.raises(ERRORS):
        rnnext.Vocabulary.from_array(
            data.draw(
                st.sampled_from(
                    [
                        np.array([0x110000]),
                        np.array([-1]),
                        np.array([], dtype=np.uint32),
                        np.array([65, 65]),
                        np.array([[65]]),
                        np.array([65.0]),
                        np.array([True]),
                    ]
                )
            )
        )


ENCODINGS = [
    "utf-8", "utf-16", "utf-32", "latin-1", "ascii", "cp1252", "shift_jis",
    "utf-7", "idna", "punycode", "undefined", "no-such-encoding",
]  # fmt: skip
# codecs that exist but do not decode bytes to text
NOT_TEXT_CODECS = ["base64", "hex", "zlib", "bz2", "uu", "rot13"]


@fuzz
@given(st.binary(max_size=200), st.sampled_from(ENCODINGS))
def test_read_text_gives_text_or_a_value_error(raw, encoding):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "corpus.txt"
        path.write_bytes(raw)
        try:
            text = rnnext.read_text(path, encoding)
        except ValueError:
            return
    assert isinstance(text, str) and text and "\r\n" not in text


# -- the corpus layout


@fuzz
@given(
    st.integers(0, 400),
    st.one_of(st.integers(-1, 12), st.sampled_from([True, 2.0, "3", None])),
    st.one_of(st.integers(-1, 12), st.sampled_from([True, 2.0, "3", None])),
    st.one_of(
        st.floats(0, 1, exclude_max=True),
        st.sampled_from([0.0, 0.5, 1.0, -0.1, np.nan, np.inf, "0.1", None, True]),
    ),
    st.sampled_from(INT_DTYPES[2:]),
)
def test_corpus_feeds_are_consecutive_windows_of_the_ids(n, B, T, f, dtype):
    ids = np.arange(n).astype(dtype)  # each id is its own position
    try:
        c = rnnext.Corpus(ids, B, T, f)
    except ERRORS:
        return
    L, F = c.row_length, c.feeds_per_epoch
    assert c.n_train + c.n_val == n and F >= 1 and L == (c.n_train - 1) // B
    t = np.arange(T)
    for i, (X, Y) in enumerate(c.train_feeds()):
        rows = np.arange(B)[:, None] * L + i * T + t
        assert np.array_equal(X, rows) and np.array_equal(Y, rows + 1)
        assert X.flags.c_contiguous and Y.flags.c_contiguous
        assert np.array_equal(c.feed(i)[0], X)
    R = c.train_rows()
    assert np.array_equal(R[:, : F * T], np.arange(B)[:, None] * L + np.arange(F * T))
    for X, Y in c.validation_feeds():
        assert X.shape == (c.validation_rows, T)
        assert (X >= c.n_train).all() and (Y < n).all()
        assert np.array_equal(Y, X + 1)
    for i in (-1, F, True, 1.0):
        with pytest.raises((IndexError, TypeError)):
            c.feed(i)


# -- checkpoints


@cache
def checkpoint_bytes():
    """A small, valid checkpoint file, as bytes."""
    from rnnext.checkpoint import Checkpoint, EpochLoss, save_checkpoint

    vocab = rnnext.Vocabulary("abcdef\n")
    model = rnnext.CharRNN(len(vocab), 3, seed=2)
    opt = rnnext.Adagrad(model, clip_norm=5.0)
    config = {"hidden_size": 3, "rows": 2, "steps": 4, "dtype": "float32"}
    c = Checkpoint(
        model, opt, vocab, config, 1, 2, None, np.random.default_rng(1),
        [EpochLoss(1.5, 1.6)], 0.25,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        return save_checkpoint(Path(d) / "c.npz", c).read_bytes()


def load_bytes(raw, name="c.npz"):
    """load_checkpoint on a file holding raw; ValueError is the only refusal."""
    from rnnext.checkpoint import Checkpoint, load_checkpoint

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(raw)
        try:
            c = load_checkpoint(path)
        except ValueError:
            return None
    assert isinstance(c, Checkpoint)
    c.model.param_tuple()  # a loaded model is usable
    return c


def members(raw):
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def npz(arrays, allow_pickle=False):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, a in arrays.items():
            with z.open(f"{k}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(a), allow_pickle=allow_pickle)
    return buf.getvalue()


needs_checkpoints = pytest.mark.skipif(
    importlib.util.find_spec("rnnext.checkpoint") is None,
    reason="no checkpoint module",
)


@needs_checkpoints
@fuzz
@given(st.binary(max_size=2000))
def test_random_bytes_are_not_a_checkpoint(raw):
    assert load_bytes(raw) is None


@needs_checkpoints
@fuzz
@given(st.data())
def test_truncated_or_damaged_checkpoints_raise_value_error(data):
    raw = checkpoint_bytes()
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
        assert load_bytes(raw) is None
        return
    damaged = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        damaged[i] = data.draw(st.integers(0, 255))
    with no_hang():
        load_bytes(bytes(damaged))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.sampled_from([10**12, 10**400, -(10**400)])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def to_json_member(obj):
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)


@needs_checkpoints
@fuzz
@given(st.data())
def test_checkpoints_with_spoilt_members_load_or_raise_value_error(data):
    m = members(checkpoint_bytes())
    name = data.draw(st.sampled_from(sorted(m)), label="member")
    how = data.draw(
        st.sampled_from(["delete", "array", "json", "json key", "object"]),
        label="how",
    )
    if how == "delete":
        del m[name]
    elif how == "array":
        dt = data.draw(st.sampled_from([*INT_DTYPES, *FLOAT_DTYPES, np.dtype("U3")]))
        shape = data.draw(
            st.sampled_from([(), (0,), (1,), (3,), (7,), (2, 3), (3, 3), (7, 3)])
        )
        value = np.array(data.draw(st.sampled_from([0, 1, -1, 7]))).astype(dt)
        m[name] = np.broadcast_to(value, shape).copy()
    elif how == "json":
        m[name] = to_json_member(data.draw(json_values))
    elif how == "json key":
        kind = data.draw(st.sampled_from(["config", "optimizer", "rng"]))
        obj = json.loads(m[kind].tobytes())
        target = obj["state"] if kind == "rng" and data.draw(st.booleans()) else obj
        key = data.draw(st.sampled_from(sorted(target) + ["extra"]))
        target[key] = data.draw(json_values)
        m[kind] = to_json_member(obj)
    else:
        m[name] = np.array([{"a": 1}], dtype=object)
    with no_hang():
        load_bytes(npz(m, allow_pickle=how == "object"))


@needs_checkpoints
@pytest.mark.parametrize(
    "version",
    [0, -1, 2, 99, 2**62, 2**64 - 1, 1.0, "1", True, [1], b"1"],
)
def test_checkpoint_versions_other_than_one_raise_value_error(version):
    m = members(checkpoint_bytes())
    if isinstance(version, int) and version >= 2**63:
        m["version"] = np.array(version, dtype=np.uint64)
    else:
        m["version"] = np.array(version)
    assert load_bytes(npz(m)) is None


@needs_checkpoints
def test_an_unspoilt_checkpoint_loads():
    c = load_bytes(checkpoint_bytes())
    assert c is not None and c.epoch == 1 and c.feed == 2
    assert load_bytes(npz(members(checkpoint_bytes()))) is not None


# -- regressions: one test per fault the properties above once found


@pytest.mark.parametrize("dtype", [">i2", ">u2", ">i4", ">i8", ">u8"])
def test_big_endian_ids_are_read_by_value(dtype):
    V, H = 300, 4
    model = rnnext.CharRNN(V, H, dtype=np.float64)
    # swapped to 256, 0, 1 and 1, 257, 256 as int16
    X = np.array([[1, 0, 256]], dtype=dtype)
    Y = np.array([[256, 257, 1]], dtype=dtype)
    h0 = np.zeros((1, H))
    P = oracle_params(model.params, np.float64)
    want, _ = ref.evaluate(P, oracle_ids(X), oracle_ids(Y), h0)
    try:
        loss, _ = model.evaluate(X, Y, h0)
    except ERRORS as e:  # refusing them, saying why, would do too
        assert "byte order" in str(e)
        return
    assert_close(loss, want, 1e-9, "loss")


def equal_dtype_copies(dt):
    """dtype objects equal to dt that are not numpy's cached instance."""
    return {
        "unpickled": pickle.loads(pickle.dumps(dt)),
        "newbyteorder('=')": dt.newbyteorder("="),
        "with metadata": np.dtype(dt, metadata={"unit": "nats"}),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("how", ["unpickled", "newbyteorder('=')", "with metadata"])
def test_equal_float_dtypes_are_accepted(dtype, how):
    V, H = 5, 3
    model = rnnext.CharRNN(V, H, dtype=dtype)
    X = np.array([[0, 1, 2], [3, 4, 0]])
    h0 = model.zero_state(2)
    want = model.loss_and_grads(X, X, h0)[0]
    dt = equal_dtype_copies(np.dtype(dtype))[how]
    assert dt == np.dtype(dtype) and dt is not np.dtype(dtype)
    for k in PARAM_NAMES:
        model.params[k] = model.params[k].astype(dt)
    assert model.evaluate(X, X, h0)[0] == want
    assert model.loss_and_grads(X, X, h0)[0] == want
    assert rnnext.Adagrad(model).step(X, X, h0)[0] == want


def run_child(code):
    """Runs code in a fresh interpreter; its sanitizer reports stay its own."""
    env = {k: v for k, v in os.environ.items() if k != "ASAN_OPTIONS"}
    env["ASAN_OPTIONS"] = "detect_leaks=0"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env,
        timeout=HANG_SECONDS,
    )  # fmt: skip


@pytest.mark.parametrize(
    "steps, start, count", [(2, 2**62, 1), (2**31, 2**31, 2**31), (2**62, 1, 1)]
)
def test_huge_feed_windows_are_refused(steps, start, count):
    code = f"""
import numpy as np, rnnext
opt = rnnext.Adagrad(rnnext.CharRNN(5, 4, dtype=np.float64))
try:
    opt.steps(np.zeros((2, 9), dtype=np.int64), {steps}, {start}, {count},
              np.zeros((2, 4)))
except ValueError:
    print("refused")
"""
    child = run_child(code)
    assert child.returncode == 0 and child.stdout.strip() == "refused", (
        f"exit {child.returncode}, stdout {child.stdout!r}, "
        f"stderr {child.stderr[-2000:]!r}"
    )


@pytest.mark.parametrize("encoding", NOT_TEXT_CODECS)
def test_read_text_refuses_codecs_that_are_not_text_encodings(tmp_path, encoding):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"aGVsbG8=")
    with pytest.raises(ValueError, match=encoding):
        rnnext.read_text(path, encoding)


@pytest.mark.parametrize("kind", ["evaluate", "loss_and_grads"])
def test_read_only_params_can_be_evaluated(kind):
    V, H = 5, 3
    model = rnnext.CharRNN(V, H, dtype=np.float64)
    X = np.array([[0, 1, 2], [3, 4, 0]])
    h0 = model.zero_state(2)
    want = getattr(model, kind)(X, X, h0)[0]
    for a in model.params.values():
        a.flags.writeable = False
    assert getattr(model, kind)(X, X, h0)[0] == want


def test_adagrad_refuses_huge_integer_options_with_value_error():
    model = rnnext.CharRNN(3, 2)
    with pytest.raises(ValueError, match="lr"):
        rnnext.Adagrad(model, lr=10**400)


@needs_checkpoints
def test_checkpoint_with_a_negative_rng_state_raises_value_error():
    m = members(checkpoint_bytes())
    rng = json.loads(m["rng"].tobytes())
    rng["state"]["state"] = -1
    m["rng"] = to_json_member(rng)
    assert load_bytes(npz(m)) is None


@needs_checkpoints
def test_checkpoint_without_a_version_raises_value_error():
    m = members(checkpoint_bytes())
    del m["version"]
    assert load_bytes(npz(m)) is None


@needs_checkpoints
@pytest.mark.parametrize(
    "member, key, value",
    [("config", "hidden_size", 10**12), ("optimizer", "lr", 10**400)],
    ids=["hidden_size=10**12", "lr=10**400"],
)
def test_checkpoint_with_huge_numbers_raises_value_error(member, key, value):
    m = members(checkpoint_bytes())
    obj = json.loads(m[member].tobytes())
    obj[key] = value
    m[member] = to_json_member(obj)
    assert load_bytes(npz(m)) is None
