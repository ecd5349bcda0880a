# Sampling: rnnext.sample and _core.sample against the NumPy oracle's greedy
# path and against softmax probabilities, plus every boundary check.
import math
import pickle

import numpy as np
import pytest

import rnnext
from rnnext import _core
from rnnext import reference as ref

CHARS = "\n !',-.:;?abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
V, H = len(CHARS), 16
DTYPES = [np.float32, np.float64]


def make_model(dtype=np.float64, V=V, H=H, seed=0, sharpness=8.0):
    """A CharRNN with nonzero biases and a sharpened output layer, so its
    logits differ by more than rounding, as a trained model's do."""
    model = rnnext.CharRNN(V, H, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 100)
    p = model.params
    p["W_hidden"] *= 2
    p["b_hidden"][:] = rng.uniform(-0.2, 0.2, H)
    p["W_softmax"] *= sharpness
    p["b_softmax"][:] = rng.uniform(-0.5, 0.5, V)
    return model


@pytest.fixture
def vocab():
    return rnnext.Vocabulary(CHARS)


def core_args(model, prime_ids=(1, 2, 3)):
    """Positional arguments of _core.sample up to length."""
    params = tuple(model.params[k] for k in ref.PARAM_NAMES)
    return params + (np.asarray(prime_ids, dtype=np.int32),)


# Results


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("prime", ["T", "Thou art", "zz\n"])
def test_greedy_matches_the_oracle(dtype, prime, vocab):
    model = make_model(dtype)
    ids = ref.sample(model.params, vocab.encode(prime), 300, greedy=True)
    expected = prime + vocab.decode(ids)
    (got,) = rnnext.sample(model, vocab, prime, 300, greedy=True)
    assert got == expected


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("H", "V"), [(1, 2), (5, 3), (16, 65), (37, 100), (3, 1)])
def test_core_greedy_matches_the_oracle_at_odd_sizes(dtype, H, V):
    model = make_model(dtype, V=V, H=H, seed=H + V)
    prime = np.arange(4) % V
    expected = ref.sample(model.params, prime, 200, greedy=True)
    got = _core.sample(*core_args(model, prime), 200, 1.0, True, 0, 0, 2)
    for row in got:
        np.testing.assert_array_equal(row, expected)


def test_texts_start_with_the_prime_and_have_the_length(vocab):
    texts = rnnext.sample(make_model(), vocab, "Thou", 25, num=3)
    assert len(texts) == 3
    for text in texts:
        assert text.startswith("Thou") and len(text) == 4 + 25


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_seed_same_text_other_seed_other_text(dtype, vocab):
    model = make_model(dtype, sharpness=1.0)
    a = rnnext.sample(model, vocab, "Thou", 200, seed=5)
    b = rnnext.sample(model, vocab, "Thou", 200, seed=5)
    c = rnnext.sample(model, vocab, "Thou", 200, seed=6)
    assert a == b
    assert a != c


def test_streams_are_distinct_and_each_its_own_call(vocab):
    model = make_model(sharpness=1.0)
    texts = rnnext.sample(model, vocab, "Th", 100, seed=3, num=5)
    assert len(set(texts)) == 5
    assert texts[0] == rnnext.sample(model, vocab, "Th", 100, seed=3)[0]
    # stream i depends on (seed, i) only: the last of i + 1 streams is it too
    for i in range(1, 5):
        alone = rnnext.sample(model, vocab, "Th", 100, seed=3, num=i + 1)[-1]
        assert alone == texts[i]


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_does_not_change_the_texts(dtype):
    model = make_model(dtype, sharpness=1.0)
    args = core_args(model) + (150, 0.8, False, 0, 11, 9)
    one = _core.sample(*args, num_threads=1)
    for threads in (2, 3, 16):
        np.testing.assert_array_equal(_core.sample(*args, num_threads=threads), one)


def test_set_num_threads_does_not_change_the_texts(vocab):
    model = make_model(sharpness=1.0)
    try:
        rnnext.set_num_threads(1)
        one = rnnext.sample(model, vocab, "Th", 80, seed=2, num=6)
        rnnext.set_num_threads(4)
        four = rnnext.sample(model, vocab, "Th", 80, seed=2, num=6)
    finally:
        rnnext.set_num_threads(None)
    assert one == four


@pytest.mark.parametrize("dtype", DTYPES)
def test_top_k_1_is_greedy(dtype, vocab):
    model = make_model(dtype, sharpness=1.0)
    greedy = rnnext.sample(model, vocab, "Thou", 300, greedy=True)
    top1 = rnnext.sample(model, vocab, "Thou", 300, top_k=1, seed=4, num=2)
    assert top1 == greedy * 2


def smallest_top_two_gap(model, vocab, text):
    """min over the steps of text of (largest - second largest logit)."""
    p = model.params
    ids = vocab.encode(text)
    h = np.zeros(model.hidden_size)
    gaps = []
    for t, x in enumerate(ids[:-1]):
        h = np.tanh(p["W_input"][x] + h @ p["W_hidden"] + p["b_hidden"])
        if t >= 3:  # past the prime "Thou"
            top = np.sort(h @ p["W_softmax"] + p["b_softmax"])[-2:]
            gaps.append(top[1] - top[0])
    return min(gaps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [1e-6, 1e-30, 1e-300])
def test_tiny_temperature_is_greedy(dtype, temperature, vocab):
    # 1e-300 is 0 in float32; the kernel must still not divide 0 by 0
    model = make_model(dtype)
    greedy = rnnext.sample(model, vocab, "Thou", 300, greedy=True)
    # premise: every other logit is e^-100 or less as likely as the largest
    assert smallest_top_two_gap(model, vocab, greedy[0]) > 100 * 1e-6
    cold = rnnext.sample(model, vocab, "Thou", 300, temperature=temperature)
    assert cold == greedy


@pytest.mark.parametrize("dtype", DTYPES)
def test_low_temperature_stays_near_greedy(dtype, vocab):
    model = make_model(dtype)
    (greedy,) = rnnext.sample(model, vocab, "Thou", 300, greedy=True)
    (cold,) = rnnext.sample(model, vocab, "Thou", 300, temperature=0.04)
    assert cold[:20] == greedy[:20]


def first_char_counts(model, temperature, top_k, n):
    """Counts of the first generated id over n streams; each stream draws it
    from the same distribution, softmax(logits after the prime / T)."""
    args = core_args(model, [0]) + (1, temperature, False, top_k, 2024, n)
    ids = _core.sample(*args)
    return np.bincount(ids[:, 0], minlength=model.vocab_size)


def softmax_of_first_step(model, temperature, top_k):
    p = model.params
    h = np.tanh(p["W_input"][0] + p["b_hidden"])
    logits = (h @ p["W_softmax"] + p["b_softmax"]).astype(np.float64)
    z = logits / temperature
    if top_k:
        z[np.argsort(-z, kind="stable")[top_k:]] = -np.inf
    e = np.exp(z - z.max())
    return e / e.sum()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("temperature", "top_k"), [(1.0, 0), (0.5, 0), (2.0, 3)])
def test_draw_frequencies_match_softmax(dtype, temperature, top_k):
    model = rnnext.CharRNN(5, 3, seed=1, dtype=dtype)
    model.params["b_softmax"][:] = np.log([0.4, 0.25, 0.2, 0.1, 0.05])
    n = 40_000
    counts = first_char_counts(model, temperature, top_k, n)
    p = softmax_of_first_step(model, temperature, top_k)

    kept = p > 0
    assert np.all(counts[~kept] == 0), f"drew outside the top {top_k}: {counts}"
    expected = n * p[kept]
    chi2 = float(np.sum((counts[kept] - expected) ** 2 / expected))
    # df <= 4: P(chi2 > 40) < 1e-7, and the fixed seed makes it repeatable
    assert chi2 < 40, f"chi2 {chi2:.1f}: counts {counts}, expected {expected}"
    assert p.max() < 0.9, "the test distribution should not be nearly greedy"


def test_float32_and_float64_models_agree_greedily(vocab):
    texts = [
        rnnext.sample(make_model(dt), vocab, "Thou", 100, greedy=True)[0]
        for dt in DTYPES
    ]
    assert texts[0] == texts[1]


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_weights_give_the_same_texts(dtype):
    model = make_model(dtype, sharpness=1.0)
    args = core_args(model)
    strided = tuple(np.asfortranarray(a) for a in args[:5])
    strided = strided[:2] + (np.repeat(args[2], 2)[::2],) + strided[3:]
    assert not strided[1].flags.c_contiguous and not strided[2].flags.c_contiguous
    rest = (60, 1.0, False, 0, 8, 3)
    np.testing.assert_array_equal(
        _core.sample(*strided, args[5], *rest), _core.sample(*args, *rest)
    )


def test_any_integer_dtype_of_prime_ids():
    model = make_model()
    args = core_args(model)
    rest = (40, 1.0, False, 0, 1, 2)
    expected = _core.sample(*args, *rest)
    for dt in (np.uint8, np.int64, np.uint64):
        got = _core.sample(*args[:5], args[5].astype(dt), *rest)
        np.testing.assert_array_equal(got, expected)


# Boundary checks of rnnext.sample


@pytest.fixture
def model():
    return make_model()


def test_model_must_be_a_charrnn(vocab):
    with pytest.raises(TypeError, match=r"model must be a CharRNN, got dict"):
        rnnext.sample({}, vocab)


def test_vocab_must_be_a_vocabulary(model):
    with pytest.raises(TypeError, match=r"vocab must be a Vocabulary, got str"):
        rnnext.sample(model, CHARS)


def test_vocab_size_must_match(model):
    with pytest.raises(ValueError, match=r"vocab has 3 characters .* vocab_size is 62"):
        rnnext.sample(model, rnnext.Vocabulary("abc"))


def test_model_params_are_checked(model, vocab):
    model.params["W_hidden"] = model.params["W_hidden"].astype(np.float32)
    with pytest.raises(TypeError, match=r"params\['W_hidden'\] must be a float64"):
        rnnext.sample(model, vocab)


def test_prime_must_be_a_str(model, vocab):
    with pytest.raises(TypeError, match=r"prime must be a str, got list"):
        rnnext.sample(model, vocab, ["T"])


def test_prime_must_not_be_empty(model, vocab):
    with pytest.raises(ValueError, match=r"at least one character .* no start token"):
        rnnext.sample(model, vocab, "")


def test_prime_characters_must_be_in_the_vocabulary(model, vocab):
    with pytest.raises(ValueError, match=r"not in the vocabulary: '\\t', '0', 'é'"):
        rnnext.sample(model, vocab, "Thé\t0u")


BAD_OPTIONS = [
    ({"length": 0}, ValueError, r"length must be at least 1, got 0"),
    ({"length": 2.0}, TypeError, r"length must be an int, got float"),
    ({"length": True}, TypeError, r"length must be an int, got bool"),
    ({"temperature": 0}, ValueError, r"temperature must be a finite number > 0"),
    ({"temperature": -1.0}, ValueError, r"temperature must be .* got -1.0"),
    ({"temperature": math.nan}, ValueError, r"temperature must be .* got nan"),
    ({"temperature": math.inf}, ValueError, r"temperature must be .* got inf"),
    ({"temperature": "1"}, TypeError, r"temperature must be a number, got str"),
    ({"temperature": True}, TypeError, r"temperature must be a number, got bool"),
    ({"greedy": 1}, TypeError, r"greedy must be a bool, got int"),
    ({"greedy": None}, TypeError, r"greedy must be a bool, got NoneType"),
    ({"top_k": 0}, ValueError, r"top_k must be at least 1, got 0"),
    ({"top_k": V + 1}, ValueError, r"top_k must be at most the vocabulary size 62"),
    ({"top_k": 2.0}, TypeError, r"top_k must be an int, got float"),
    ({"seed": -1}, ValueError, r"seed must be at least 0, got -1"),
    ({"seed": 2**64}, ValueError, r"seed must be below 2\*\*64"),
    ({"seed": 1.5}, TypeError, r"seed must be an int, got float"),
    ({"num": 0}, ValueError, r"num must be at least 1, got 0"),
    ({"num": "2"}, TypeError, r"num must be an int, got str"),
]


@pytest.mark.parametrize(("options", "error", "message"), BAD_OPTIONS)
def test_bad_options_are_refused(options, error, message, model, vocab):
    with pytest.raises(error, match=message):
        rnnext.sample(model, vocab, "Thou", **options)


def test_numpy_scalars_are_accepted(model, vocab):
    texts = rnnext.sample(
        model,
        vocab,
        "Thou",
        np.int64(10),
        temperature=np.float32(0.5),
        greedy=np.bool_(False),
        top_k=np.uint8(5),
        seed=np.uint64(2**64 - 1),
        num=np.int32(2),
    )
    assert [len(t) for t in texts] == [14, 14]


# Boundary checks of _core.sample

OPTIONS = (10, 1.0, False, 0, 0, 1)  # length, temperature, greedy, top_k, seed, num


def core_call(model, replace=None, options=None, prime_ids=(1, 2, 3)):
    """_core.sample with some positional arguments replaced by index."""
    args = list(core_args(model, prime_ids) + OPTIONS)
    for i, value in (replace or {}).items():
        args[i] = value
    return _core.sample(*args, **(options or {}))


def test_core_weights_must_be_float32_or_float64(model):
    W = model.params["W_input"].astype(np.float16)
    with pytest.raises(
        TypeError, match=r"W_input must be float32 or float64, got float16"
    ):
        core_call(model, {0: W})


def test_core_weights_must_be_native_byte_order(model):
    W = model.params["W_input"].astype(">f8")
    with pytest.raises(TypeError, match=r"W_input must be float32 or float64, got >f8"):
        core_call(model, {0: W})


def test_core_accepts_equal_dtype_objects(model):
    # unpickled arrays carry dtype objects equal, not identical, to float64's
    args = core_args(model)
    copies = tuple(pickle.loads(pickle.dumps(a)) for a in args[:5])
    assert copies[0].dtype is not args[0].dtype
    rest = (30, 1.0, False, 0, 3, 2)
    np.testing.assert_array_equal(
        _core.sample(*copies, args[5], *rest), _core.sample(*args, *rest)
    )


def test_core_weights_must_share_a_dtype(model):
    b = model.params["b_softmax"].astype(np.float32)
    with pytest.raises(
        TypeError, match=r"b_softmax must have W_input's dtype float64, got float32"
    ):
        core_call(model, {4: b})


def test_core_W_input_must_be_two_dimensional(model):
    with pytest.raises(
        ValueError,
        match=r"W_input must have shape \(V, H\) with V, H >= 1, got \(62,\)",
    ):
        core_call(model, {0: model.params["W_input"][:, 0].copy()})


@pytest.mark.parametrize(
    ("index", "shape", "message"),
    [
        (
            1,
            (H, H + 1),
            r"W_hidden must have shape \(H, H\) = \(16, 16\), got \(16, 17\)",
        ),
        (2, (H, 1), r"b_hidden must have shape \(H,\) = \(16,\), got \(16, 1\)"),
        (3, (V, H), r"W_softmax must have shape \(H, V\) = \(16, 62\), got \(62, 16\)"),
        (4, (V - 1,), r"b_softmax must have shape \(V,\) = \(62,\), got \(61,\)"),
    ],
)
def test_core_shapes_are_checked(index, shape, message, model):
    with pytest.raises(ValueError, match=message):
        core_call(model, {index: np.zeros(shape)})


def test_core_weights_must_be_finite(model):
    W = model.params["W_hidden"].copy()
    W[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"W_hidden contains NaN or infinity"):
        core_call(model, {1: W})


def test_core_prime_ids_must_be_integers(model):
    with pytest.raises(
        TypeError, match=r"prime_ids must be an integer array, got dtype float64"
    ):
        core_call(model, {5: np.array([1.0, 2.0])})


def test_core_prime_ids_must_be_one_dimensional(model):
    with pytest.raises(ValueError, match=r"prime_ids must be 1-D, got shape \(1, 2\)"):
        core_call(model, {5: np.array([[1, 2]])})


def test_core_prime_ids_must_not_be_empty(model):
    with pytest.raises(ValueError, match=r"at least one id \(there is no start token"):
        core_call(model, {5: np.array([], dtype=np.int32)})


@pytest.mark.parametrize("bad", [-1, V, 2**63 + 5])
def test_core_prime_ids_must_be_in_range(bad, model):
    ids = np.array([0, bad], dtype=np.uint64 if bad > 2**62 else np.int64)
    with pytest.raises(
        ValueError, match=r"prime_ids\[1\] = .* outside \[0, V\) = \[0, 62\)"
    ):
        core_call(model, {5: ids})


@pytest.mark.parametrize(
    ("index", "value", "message"),
    [
        (6, 0, r"length must be >= 1, got 0"),
        (7, 0.0, r"temperature must be finite and > 0, got 0.0"),
        (7, -2.0, r"temperature must be finite and > 0, got -2.0"),
        (7, math.inf, r"temperature must be finite and > 0, got inf"),
        (7, math.nan, r"temperature must be finite and > 0, got nan"),
        (9, -1, r"top_k must be in \[0, V\] = \[0, 62\] \(0 keeps all\), got -1"),
        (9, V + 1, r"top_k must be in \[0, V\] = \[0, 62\] \(0 keeps all\), got 63"),
        (10, -1, r"seed must be an int in \[0, 2\*\*64\), got -1"),
        (10, 2**64, r"seed must be an int in \[0, 2\*\*64\), got 18446744073709551616"),
        (11, 0, r"num must be >= 1, got 0"),
    ],
)
def test_core_options_are_checked(index, value, message, model):
    with pytest.raises(ValueError, match=message):
        core_call(model, {index: value})


def test_core_seed_must_be_an_integer(model):
    with pytest.raises(TypeError, match=r"seed must be an int, got float"):
        core_call(model, {10: 1.0})


def test_core_num_threads_must_not_be_negative(model):
    with pytest.raises(
        ValueError, match=r"num_threads must be >= 0 \(0: one per core\), got -1"
    ):
        core_call(model, options={"num_threads": -1})
