# The NumPy oracle checked on its own: loss at init, finite differences,
# the clip and Adagrad formulas. The compiled kernel is not used here.
import math

import numpy as np
import pytest

from rnnext import reference as ref

NAMES = ref.PARAM_NAMES


def max_rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected|, relative to the largest magnitude of either."""
    scale = max(np.max(np.abs(actual)), np.max(np.abs(expected)), 1e-300)
    return float(np.max(np.abs(actual - expected)) / scale)


def random_problem(H, V, B, T, seed=0, dtype=np.float64):
    """Params with nonzero biases, random X, Y and h0."""
    rng = np.random.default_rng(seed)
    params = ref.init_params(V, H, seed=seed, dtype=dtype)
    params["b_hidden"][:] = rng.uniform(-0.3, 0.3, H)
    params["b_softmax"][:] = rng.uniform(-0.3, 0.3, V)
    X = rng.integers(0, V, size=(B, T))
    Y = rng.integers(0, V, size=(B, T))
    h0 = rng.uniform(-0.5, 0.5, size=(B, H)).astype(dtype)
    return params, X, Y, h0


@pytest.mark.parametrize("V", [2, 27, 65])
def test_loss_at_near_zero_init_is_ln_V(V):
    params, X, Y, h0 = random_problem(8, V, 4, 5)
    params = {name: w * 1e-8 for name, w in params.items()}
    loss, _ = ref.evaluate(params, X, Y, h0 * 1e-8)
    err = abs(loss - math.log(V))
    assert err <= 1e-6, f"loss {loss} vs ln V {math.log(V)}: diff {err} > 1e-6"


def test_loss_matches_scalar_loops():
    H, V, B, T = 4, 5, 3, 4
    params, X, Y, h0 = random_problem(H, V, B, T, seed=1)
    Wi, Wh, bh, Ws, bs = (params[name].tolist() for name in NAMES)

    total = 0.0
    h_T = []
    for b in range(B):
        h = h0[b].tolist()
        for t in range(T):
            h = [
                math.tanh(
                    Wi[X[b, t]][j] + sum(h[k] * Wh[k][j] for k in range(H)) + bh[j]
                )
                for j in range(H)
            ]
            logits = [sum(h[k] * Ws[k][v] for k in range(H)) + bs[v] for v in range(V)]
            log_z = math.log(sum(math.exp(z) for z in logits))
            total += log_z - logits[Y[b, t]]
        h_T.append(h)

    loss, h = ref.evaluate(params, X, Y, h0)
    expected = total / (B * T)
    assert abs(loss - expected) <= 1e-12, f"loss {loss} vs {expected}, tol 1e-12"
    err = np.max(np.abs(h - np.array(h_T)))
    assert err <= 1e-12, f"h_T max diff {err} > 1e-12"


@pytest.mark.parametrize(
    "H, V, B, T",
    [(5, 3, 1, 1), (4, 7, 3, 6), (9, 4, 5, 3), (6, 11, 2, 8)],
)
def test_grads_match_finite_differences(H, V, B, T):
    params, X, Y, h0 = random_problem(H, V, B, T, seed=H * V + B * T)
    _, grads, _ = ref.loss_and_grads(params, X, Y, h0)

    def loss():
        return ref.evaluate(params, X, Y, h0)[0]

    for name in (*NAMES, "h0"):
        w = h0 if name == "h0" else params[name]
        numeric = ref.numerical_grad(loss, w)
        err = max_rel_err(grads[name], numeric)
        assert err <= 1e-6, f"{name} (H={H} V={V} B={B} T={T}): rel err {err} > 1e-6"


def test_evaluate_and_loss_and_grads_agree():
    params, X, Y, h0 = random_problem(7, 6, 3, 4)
    loss_e, h_e = ref.evaluate(params, X, Y, h0)
    loss_g, _, h_g = ref.loss_and_grads(params, X, Y, h0)
    assert loss_e == loss_g
    assert np.array_equal(h_e, h_g)


def test_float32_matches_float64():
    p64, X, Y, h0 = random_problem(8, 10, 4, 5)
    p32 = {name: w.astype(np.float32) for name, w in p64.items()}
    p64 = {name: w.astype(np.float64) for name, w in p32.items()}
    h0 = h0.astype(np.float32)

    loss32, g32, h32 = ref.loss_and_grads(p32, X, Y, h0)
    loss64, g64, h64 = ref.loss_and_grads(p64, X, Y, h0.astype(np.float64))
    assert h32.dtype == np.float32
    assert all(g32[name].dtype == np.float32 for name in g32)
    assert abs(loss32 - loss64) <= 1e-5 * loss64, f"loss {loss32} vs {loss64}"
    for name in g64:
        err = max_rel_err(g32[name], g64[name])
        assert err <= 1e-5, f"{name}: rel err {err} > 1e-5"


def test_clip_elementwise():
    grads = {name: np.linspace(-2, 2, 9) for name in (*NAMES, "h0")}
    clipped = ref.clip_grads(grads, clip=0.5)
    for name in NAMES:
        expected = np.array([-0.5, -0.5, -0.5, -0.5, 0, 0.5, 0.5, 0.5, 0.5])
        assert np.array_equal(clipped[name], expected), f"{name}: {clipped[name]}"
    assert np.array_equal(clipped["h0"], grads["h0"])
    assert np.array_equal(grads["W_input"], np.linspace(-2, 2, 9)), "input changed"


def test_clip_by_norm_rescales_all_params_together():
    rng = np.random.default_rng(3)
    grads = {name: rng.normal(size=(3, 4)) for name in (*NAMES, "h0")}
    norm = math.sqrt(sum(np.sum(grads[name] ** 2) for name in NAMES))

    clipped = ref.clip_grads(grads, clip_norm=norm / 4)
    new_norm = math.sqrt(sum(np.sum(clipped[name] ** 2) for name in NAMES))
    assert abs(new_norm - norm / 4) <= 1e-12 * norm, f"norm {new_norm} vs {norm / 4}"
    for name in NAMES:
        err = max_rel_err(clipped[name], grads[name] / 4)
        assert err <= 1e-15, f"{name}: rel err {err} > 1e-15"
    assert np.array_equal(clipped["h0"], grads["h0"])

    untouched = ref.clip_grads(grads, clip_norm=norm * 1.01)
    for name in grads:
        assert np.array_equal(untouched[name], grads[name]), name


def test_adagrad_update_matches_formula():
    rng = np.random.default_rng(4)
    params = {name: rng.normal(size=(2, 3)) for name in NAMES}
    accums = {name: np.full((2, 3), 0.1) for name in NAMES}
    grads = {name: rng.normal(size=(2, 3)) for name in NAMES}
    lr, eps = 0.3, 1e-8
    old_w = {name: params[name].tolist() for name in NAMES}

    ref.adagrad_update(params, accums, grads, lr, eps)
    for name in NAMES:
        for i in np.ndindex(2, 3):
            g = float(grads[name][i])
            a = 0.1 + g * g
            w = old_w[name][i[0]][i[1]] - lr * g / (math.sqrt(a) + eps)
            assert accums[name][i] == pytest.approx(a, rel=1e-15, abs=0)
            assert params[name][i] == pytest.approx(w, rel=1e-15, abs=0)


def test_step_is_grads_then_clip_then_update():
    params, X, Y, h0 = random_problem(6, 5, 3, 4)
    accums = {name: np.full_like(params[name], 0.1) for name in NAMES}
    expected_p = {name: w.copy() for name, w in params.items()}
    expected_a = {name: a.copy() for name, a in accums.items()}

    loss, h_T = ref.step(params, accums, X, Y, h0, lr=0.2, clip_norm=0.05)
    loss0, grads, h0_T = ref.loss_and_grads(expected_p, X, Y, h0)
    grads = ref.clip_grads(grads, clip_norm=0.05)
    ref.adagrad_update(expected_p, expected_a, grads, 0.2, 1e-10)
    assert loss == loss0
    assert np.array_equal(h_T, h0_T)
    for name in NAMES:
        assert np.array_equal(params[name], expected_p[name]), name
        assert np.array_equal(accums[name], expected_a[name]), name


def test_greedy_sample_is_argmax_after_prime():
    params, *_ = random_problem(8, 6, 1, 1, seed=5)
    prime = [1, 4, 2]
    out = ref.sample(params, prime, 12, greedy=True)
    assert out.dtype == np.int32 and out.shape == (12,)
    assert np.array_equal(out, ref.sample(params, prime, 12, greedy=True))

    Wi, Wh, bh, Ws, bs = (params[name] for name in NAMES)
    h = np.zeros(8)
    for x in [*prime, *out[:-1]]:
        h = np.tanh(Wi[x] + h @ Wh + bh)
    expected_last = np.argmax(h @ Ws + bs)
    assert out[-1] == expected_last


def test_weighted_sample_follows_rng():
    params, *_ = random_problem(8, 6, 1, 1, seed=6)
    a = ref.sample(params, [0], 30, rng=np.random.default_rng(7))
    b = ref.sample(params, [0], 30, rng=np.random.default_rng(7))
    assert np.array_equal(a, b)
    assert a.min() >= 0 and a.max() < 6

    cold = ref.sample(params, [0], 30, temperature=1e-4, rng=np.random.default_rng(8))
    greedy = ref.sample(params, [0], 30, greedy=True)
    assert np.array_equal(cold, greedy)
