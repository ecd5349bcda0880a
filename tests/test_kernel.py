# The compiled kernel, through rnnext.CharRNN and rnnext.Adagrad, against
# the NumPy oracle and finite differences. Input checking is left to
# test_boundary.py.
import math

import numpy as np
import pytest

import rnnext
from rnnext import reference as ref

NAMES = ref.PARAM_NAMES
TOL = {np.float64: 1e-10, np.float32: 1e-4}

# (H, V, B, T): tiny, odd and uneven sizes, plus one near the seed config.
SHAPES = [
    (5, 3, 1, 1),
    (33, 70, 13, 7),
    (16, 65, 9, 5),
    (1, 2, 3, 2),
    (24, 11, 20, 4),
]


def max_rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected|, relative to the largest magnitude of either."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(np.max(np.abs(actual)), np.max(np.abs(expected)), 1e-300)
    return float(np.max(np.abs(actual - expected)) / scale)


def assert_close(actual, expected, tol, what):
    err = max_rel_err(actual, expected)
    diff = float(np.max(np.abs(np.asarray(actual, np.float64) - expected)))
    assert err <= tol, f"{what}: max diff {diff:.3e}, rel err {err:.3e} > {tol:.0e}"


def make_problem(H, V, B, T, dtype=np.float64, seed=0):
    """A model with nonzero biases, random X, Y, h0 and the oracle's params."""
    model = rnnext.CharRNN(V, H, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 100)
    model.params["b_hidden"][:] = rng.uniform(-0.3, 0.3, H)
    model.params["b_softmax"][:] = rng.uniform(-0.3, 0.3, V)
    X, Y = random_batch(rng, V, B, T)
    h0 = rng.uniform(-0.5, 0.5, size=(B, H)).astype(dtype)
    oracle = {name: w.astype(np.float64) for name, w in model.params.items()}
    return model, oracle, X, Y, h0


def random_batch(rng, V, B, T):
    X = rng.integers(0, V, size=(B, T), dtype=np.int32)
    Y = rng.integers(0, V, size=(B, T), dtype=np.int32)
    return X, Y


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_init_matches_oracle(dtype):
    model = rnnext.CharRNN(70, 33, seed=7, dtype=dtype)
    expected = ref.init_params(70, 33, seed=7, dtype=dtype)
    assert list(model.params) == list(NAMES)
    for name in NAMES:
        w = model.params[name]
        assert w.dtype == dtype, f"{name} is {w.dtype}"
        assert np.array_equal(w, expected[name]), f"{name} differs from the oracle"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("V", [2, 65, 257])
def test_loss_at_near_zero_init_is_ln_V(V, dtype):
    model, _, X, Y, _ = make_problem(8, V, 6, 5, dtype)
    for w in model.params.values():
        w *= 1e-12
    loss, _, _ = model.loss_and_grads(X, Y, model.zero_state(6))
    tol = 1e-10 if dtype == np.float64 else 1e-6
    err = abs(loss - math.log(V)) / math.log(V)
    assert err <= tol, f"loss {loss} vs ln V {math.log(V)}: rel err {err} > {tol}"


@pytest.mark.parametrize("H, V, B, T", SHAPES)
def test_grads_match_finite_differences(H, V, B, T):
    model, _, X, Y, h0 = make_problem(H, V, B, T, seed=H + V + B + T)
    _, grads, _ = model.loss_and_grads(X, Y, h0)
    assert list(grads) == [*NAMES, "h0"]

    def loss():
        return model.evaluate(X, Y, h0)[0]

    for name in (*NAMES, "h0"):
        w = h0 if name == "h0" else model.params[name]
        numeric = ref.numerical_grad(loss, w)
        assert_close(grads[name], numeric, 1e-6, f"{name} H={H} V={V} B={B} T={T}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("H, V, B, T", SHAPES)
def test_loss_and_grads_match_oracle(H, V, B, T, dtype):
    model, oracle, X, Y, h0 = make_problem(H, V, B, T, dtype)
    h0_before = h0.copy()
    loss, grads, h_T = model.loss_and_grads(X, Y, h0)
    loss_ref, grads_ref, h_T_ref = ref.loss_and_grads(oracle, X, Y, h0)

    tol = TOL[dtype]
    assert h_T.dtype == dtype and h_T.shape == (B, H)
    assert np.array_equal(h0, h0_before), "loss_and_grads changed h0"
    assert_close(loss, loss_ref, tol, "loss")
    assert_close(h_T, h_T_ref, tol, "h_T")
    for name in grads_ref:
        assert grads[name].dtype == dtype, f"{name} is {grads[name].dtype}"
        assert_close(grads[name], grads_ref[name], tol, name)


# A block whose states exceed half a megabyte has them repacked before its
# weight gradients. With AVX-512's blocks of 8 rows, the first block here is
# repacked and the second (3 rows) is not; H is not a whole number of
# register tiles.
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_grads_of_long_blocks_match_oracle(dtype):
    model, oracle, X, Y, h0 = make_problem(500, 37, 11, 40, dtype)
    loss, grads, h_T = model.loss_and_grads(X, Y, h0)
    loss_ref, grads_ref, h_T_ref = ref.loss_and_grads(oracle, X, Y, h0)
    tol = TOL[dtype]
    assert_close(loss, loss_ref, tol, "loss")
    for name in grads_ref:
        assert_close(grads[name], grads_ref[name], tol, name)


def logit_range(params):
    """max_v (b + sum_k |W|) - max_v (b - sum_k |W|) of the softmax layer."""
    a = np.abs(params["W_softmax"].astype(np.float64)).sum(axis=0)
    b = params["b_softmax"].astype(np.float64)
    return float((b + a).max() - (b - a).max())


# The kernel shifts each row's softmax by a bound on all logits when the
# bound is tight (a range of at most 60 in float32, 300 in float64), by the
# row's max otherwise; both must match the oracle, also with logits of
# hundreds. V = 65 and 67 leave one and three columns past the last whole
# vector, taken apart from the rest; with V = 3 there is no whole vector.
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("spread", [5.0, 30.0, 150.0, 1000.0])
@pytest.mark.parametrize("H, V", [(16, 65), (40, 67), (64, 3)])
def test_loss_and_grads_match_oracle_for_any_logit_range(H, V, dtype, spread):
    model, _, X, Y, h0 = make_problem(H, V, 9, 5, dtype, seed=7)
    model.params["W_softmax"] *= dtype(spread / logit_range(model.params))
    oracle = {name: w.astype(np.float64) for name, w in model.params.items()}
    got = logit_range(model.params)
    # the spreads cover both sides of both limits
    assert (got <= 60, got <= 300) == (spread < 60, spread < 300), got
    loss, grads, h_T = model.loss_and_grads(X, Y, h0)
    loss_ref, grads_ref, h_T_ref = ref.loss_and_grads(oracle, X, Y, h0)
    tol = TOL[dtype]
    assert np.isfinite(loss)
    assert_close(loss, loss_ref, tol, f"loss (logit range {got:.0f})")
    for name in grads_ref:
        assert_close(grads[name], grads_ref[name], tol, name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("H, V", [(23, 2), (40, 67)])
def test_an_infinite_state_saturates_as_in_the_oracle(H, V, dtype):
    # H short of a whole vector, V's last columns apart (see tail_logits):
    # the state's padding must not turn inf * 0 into NaN in their logits
    model, oracle, X, Y, h0 = make_problem(H, V, 9, 3, dtype, seed=5)
    h0[0, 1], h0[4, H - 1] = np.inf, -np.inf
    loss, grads, h_T = model.loss_and_grads(X, Y, h0)
    loss_e, h_T_e = model.evaluate(X, Y, h0)
    with np.errstate(all="ignore"):
        loss_ref, grads_ref, h_T_ref = ref.loss_and_grads(oracle, X, Y, h0)
    assert np.isfinite(loss_ref) and np.isfinite(h_T_ref).all()
    for what, a in [("loss", loss), ("loss (evaluate)", loss_e)]:
        assert_close(a, loss_ref, TOL[dtype], what)
    assert_close(h_T, h_T_ref, TOL[dtype], "h_T")
    assert_close(h_T_e, h_T_ref, TOL[dtype], "h_T (evaluate)")
    for name, want in grads_ref.items():
        finite = np.isfinite(want)
        assert np.array_equal(np.isfinite(grads[name]), finite), name
        assert_close(grads[name][finite], want[finite], TOL[dtype], name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("H, V, B, T", SHAPES)
def test_evaluate_matches_oracle(H, V, B, T, dtype):
    model, oracle, X, Y, h0 = make_problem(H, V, B, T, dtype, seed=3)
    loss, h_T = model.evaluate(X, Y, h0)
    loss_ref, h_T_ref = ref.evaluate(oracle, X, Y, h0)
    assert h_T.dtype == dtype
    assert_close(loss, loss_ref, TOL[dtype], "loss")
    assert_close(h_T, h_T_ref, TOL[dtype], "h_T")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_hidden_state_is_tanh_to_a_few_ulp_and_saturates_exactly(dtype):
    # one step from h0 = 0 with W_hidden = b_hidden = 0: h_1 = tanh(W_input[x])
    H = 4096
    model = rnnext.CharRNN(2, H, seed=0, dtype=dtype)
    a = np.linspace(0, 25, H, dtype=np.float64)
    a[1:64] = np.geomspace(1e-30, 1e-2, 63)
    model.params["W_input"][:] = np.stack([a, -a]).astype(dtype)
    model.params["W_hidden"][:] = 0
    model.params["b_hidden"][:] = 0
    X = np.array([[0], [1]], dtype=np.int32)
    _, h = model.evaluate(X, X, model.zero_state(2))

    x = model.params["W_input"].astype(np.float64)
    want = np.tanh(x)
    ulp = np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
    err = np.abs(h - want) / np.maximum(ulp, np.finfo(dtype).tiny)
    worst = x.flat[err.argmax()]
    assert err.max() <= 6, f"max error {err.max():.2f} ulp (tol 6) at x = {worst}"
    assert np.array_equal(h[0], -h[1]), "tanh is not odd"
    # where tanh rounds to 1, h is 1 exactly, so that 1 - h^2 is 0
    saturated = (want.astype(dtype) == np.sign(x)) & (x != 0)
    assert saturated.sum() > 100
    assert np.array_equal(h[saturated], np.sign(x[saturated]))


def clip_settings(mode, grads):
    """clip / clip_norm that bind for a good share of the first grads."""
    if mode == "none":
        return {}
    flat = np.concatenate([grads[name].ravel() for name in NAMES])
    if mode == "clip":
        return {"clip": float(np.quantile(np.abs(flat), 0.7))}
    return {"clip_norm": 0.5 * float(np.linalg.norm(flat))}


@pytest.mark.parametrize("mode", ["none", "clip", "clip_norm"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "H, V, B, T",
    # the last two: the work after the blocks split between threads, and
    # float64 state rows a whole 4 KB page wide (stored a vector apart)
    [(33, 70, 13, 7), (5, 3, 1, 1), (16, 65, 9, 5), (260, 40, 9, 3), (512, 7, 9, 3)],
)
def test_adagrad_steps_match_oracle(H, V, B, T, dtype, mode):
    model, oracle, X, Y, h0 = make_problem(H, V, B, T, dtype, seed=4)
    clip = clip_settings(mode, ref.loss_and_grads(oracle, X, Y, h0)[1])
    opt = rnnext.Adagrad(model, lr=0.05, **clip)
    accums = {name: np.full_like(w, 0.1) for name, w in oracle.items()}
    rng = np.random.default_rng(5)
    tol = TOL[dtype]

    h, h_ref = h0, h0.astype(np.float64)
    for i in range(20):
        loss, h = opt.step(X, Y, h)
        loss_ref, h_ref = ref.step(oracle, accums, X, Y, h_ref, lr=0.05, **clip)
        assert_close(loss, loss_ref, tol, f"loss at step {i}")
        X, Y = random_batch(rng, V, B, T)

    assert_close(h, h_ref, tol, "h_T after 20 steps")
    for name in NAMES:
        assert model.params[name].dtype == dtype
        assert_close(model.params[name], oracle[name], tol, f"{name} after 20 steps")
        assert_close(opt.accumulators[name], accums[name], tol, f"accum {name}")


def test_adagrad_from_zero_accumulator_matches_formula():
    H, V, B, T = 33, 70, 2, 3  # most rows of W_input get no gradient
    model, oracle, X, Y, h0 = make_problem(H, V, B, T)
    opt = rnnext.Adagrad(model, lr=0.2, initial_accumulator=0.0, eps=1e-10)
    for name in NAMES:
        assert not np.any(opt.accumulators[name]), f"accum {name} starts nonzero"

    _, grads, _ = ref.loss_and_grads(oracle, X, Y, h0)
    opt.step(X, Y, h0)
    for name in NAMES:
        g = grads[name]
        expected = oracle[name] - 0.2 * g / (np.sqrt(g * g) + 1e-10)
        assert np.all(np.isfinite(model.params[name])), f"{name} not finite"
        assert_close(opt.accumulators[name], g * g, 1e-10, f"accum {name}")
        assert_close(model.params[name], expected, 1e-10, name)


@pytest.fixture
def restore_threads():
    old = rnnext.get_num_threads()
    yield
    rnnext.set_num_threads(old)


# (H, V): the second is big enough that the work after the blocks is split
# between threads too; the third has float64 state rows a 4 KB page wide
@pytest.mark.parametrize("H, V", [(33, 70), (260, 40), (512, 7)])
@pytest.mark.parametrize("clip_norm", [None, 1.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B", [13, 64])
def test_thread_count_does_not_change_results(
    B, dtype, clip_norm, H, V, restore_threads
):
    results = []
    for n in (1, 2, 3):
        rnnext.set_num_threads(n)
        assert rnnext.get_num_threads() == n
        model, _, X, Y, h0 = make_problem(H, V, B, 7, dtype, seed=6)
        loss, grads, h_T = model.loss_and_grads(X, Y, h0)
        opt = rnnext.Adagrad(model, clip_norm=clip_norm)
        h = h0
        for _ in range(5):
            _, h = opt.step(X, Y, h)
        results.append((loss, grads, h_T, h, model.params, opt.accumulators))

    loss1, g1, hT1, h1, p1, a1 = results[0]
    for n, (loss2, g2, hT2, h2, p2, a2) in zip((2, 3), results[1:]):
        assert loss1 == loss2, f"loss {loss1!r} with 1 thread, {loss2!r} with {n}"
        assert np.array_equal(hT1, hT2), f"h_T differs with {n} threads"
        assert np.array_equal(h1, h2), f"h after 5 steps differs with {n} threads"
        for name in g1:
            assert np.array_equal(g1[name], g2[name]), f"grad {name} differs ({n})"
        for name in NAMES:
            assert np.array_equal(p1[name], p2[name]), f"{name} differs ({n})"
            assert np.array_equal(a1[name], a2[name]), f"accum {name} differs ({n})"


# The same where blocks have their states packed (see
# test_grads_of_long_blocks_match_oracle): with AVX-512's blocks of 8 rows,
# the first of the two is packed, and in float32 the second is not.
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_thread_count_does_not_change_packed_results(dtype, restore_threads):
    results = []
    for n in (1, 2, 3):
        rnnext.set_num_threads(n)
        model, _, X, Y, h0 = make_problem(450, 20, 13, 40, dtype, seed=7)
        loss, grads, _ = model.loss_and_grads(X, Y, h0)
        opt = rnnext.Adagrad(model)
        opt.step(X, Y, h0)
        results.append((loss, grads, model.params))
    loss1, g1, p1 = results[0]
    for n, (loss2, g2, p2) in zip((2, 3), results[1:]):
        assert loss1 == loss2, f"loss {loss1!r} with 1 thread, {loss2!r} with {n}"
        for name in NAMES:
            assert np.array_equal(g1[name], g2[name]), f"grad {name} differs ({n})"
            assert np.array_equal(p1[name], p2[name]), f"{name} differs ({n})"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_step_that_would_overflow_a_weight_changes_nothing(dtype):
    model = rnnext.CharRNN(5, 4, dtype=dtype)
    big = np.finfo(dtype).max
    model.params["b_softmax"][:] = big * 0.97
    before = {k: v.copy() for k, v in model.params.items()}
    opt = rnnext.Adagrad(model, lr=float(big) / 4)
    accums = {k: v.copy() for k, v in opt.accumulators.items()}
    loss, _ = opt.step([[0, 1, 2]], [[1, 2, 3]], model.zero_state(1))
    assert np.isfinite(loss) and not opt.updated
    for k in before:
        assert np.array_equal(model.params[k], before[k]), k
        assert np.array_equal(opt.accumulators[k], accums[k]), k
