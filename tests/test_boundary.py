# Every check at the boundary of CharRNN, Adagrad and the thread setting:
# one pytest.raises per rule. Whether results are right is test_kernel.py's.
import math

import numpy as np
import pytest

import rnnext

H, V, B, T = 4, 5, 2, 3
CALLS = ["evaluate", "loss_and_grads", "step"]


def entry(kind, model):
    """One of the three entry points that take (X, Y, h0)."""
    if kind == "step":
        return rnnext.Adagrad(model).step
    return getattr(model, kind)


def call(kind, model, X, Y, h0):
    return entry(kind, model)(X, Y, h0)


@pytest.fixture
def model():
    return rnnext.CharRNN(V, H, dtype=np.float64)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    X = rng.integers(0, V, size=(B, T))
    Y = rng.integers(0, V, size=(B, T))
    return X, Y, np.zeros((B, H))


# X and Y


@pytest.mark.parametrize("kind", CALLS)
def test_float_ids_are_refused(kind, model, batch):
    X, Y, h0 = batch
    with pytest.raises(TypeError, match=r"X must be an integer array .* float64"):
        call(kind, model, X.astype(np.float64), Y, h0)
    with pytest.raises(TypeError, match=r"Y must be an integer array .* float32"):
        call(kind, model, X, Y.astype(np.float32), h0)


@pytest.mark.parametrize("kind", CALLS)
def test_ids_must_be_two_dimensional(kind, model, batch):
    X, Y, h0 = batch
    with pytest.raises(ValueError, match=r"X must have shape \(rows, steps\), got"):
        call(kind, model, X.ravel(), Y.ravel(), h0)


@pytest.mark.parametrize("kind", CALLS)
def test_X_and_Y_shapes_must_match(kind, model, batch):
    X, Y, h0 = batch
    with pytest.raises(ValueError, match=r"same shape, got \(2, 3\) and \(2, 2\)"):
        call(kind, model, X, Y[:, :2], h0)


@pytest.mark.parametrize("kind", CALLS)
@pytest.mark.parametrize("name", ["X", "Y"])
def test_id_out_of_range(kind, name, model, batch):
    X, Y, h0 = batch
    bad = (X if name == "X" else Y).copy()
    bad[1, 2] = V
    args = (bad, Y) if name == "X" else (X, bad)
    match = rf"{name}\[1, 2\] = 5 is not a valid id: expected 0 <= id < 5"
    with pytest.raises(ValueError, match=match):
        call(kind, model, *args, h0)


@pytest.mark.parametrize("kind", CALLS)
@pytest.mark.parametrize("name", ["X", "Y"])
def test_negative_id(kind, name, model, batch):
    X, Y, h0 = batch
    bad = (X if name == "X" else Y).copy()
    bad[0, 1] = -1
    args = (bad, Y) if name == "X" else (X, bad)
    with pytest.raises(ValueError, match=rf"{name}\[0, 1\] = -1 is not a valid id"):
        call(kind, model, *args, h0)


@pytest.mark.parametrize("kind", CALLS)
def test_zero_rows(kind, model, batch):
    X, Y, _ = batch
    with pytest.raises(ValueError, match=r"X has shape \(0, 3\): expected at least"):
        call(kind, model, X[:0], Y[:0], np.zeros((0, H)))


@pytest.mark.parametrize("kind", CALLS)
def test_zero_steps(kind, model, batch):
    X, Y, h0 = batch
    with pytest.raises(ValueError, match=r"X has shape \(2, 0\): expected at least"):
        call(kind, model, X[:, :0], Y[:, :0], h0)


@pytest.mark.parametrize("kind", CALLS)
def test_strided_ids_give_the_same_result_as_a_copy(kind, batch):
    rng = np.random.default_rng(1)
    X = rng.integers(0, V, size=(B, 2 * T))
    Y = rng.integers(0, V, size=(B, 2 * T))
    h0 = batch[2]
    assert not X[:, ::2].flags.c_contiguous
    strided = call(kind, rnnext.CharRNN(V, H), X[:, ::2], Y[:, ::2], h0)
    copied = call(kind, rnnext.CharRNN(V, H), X[:, ::2].copy(), Y[:, ::2].copy(), h0)
    assert strided[0] == copied[0]
    assert np.array_equal(strided[-1], copied[-1])


INT_DTYPES = ["i1", "u1", "<i2", ">i2", "<u2", "<i4", ">i4", "<u4", "<i8", ">u8"]


def laid_out(a, layout):
    """a's values as C-contiguous, as rows that do not follow one another
    (a slice of wider rows), or one byte off the alignment of the dtype."""
    if layout == "C":
        return a.copy()
    if layout == "sliced":
        wide = np.zeros((a.shape[0], a.shape[1] + 3), dtype=a.dtype)
        wide[:, 1 : 1 + a.shape[1]] = a
        return wide[:, 1 : 1 + a.shape[1]]
    raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
    out = np.frombuffer(raw.data, dtype=a.dtype, count=a.size, offset=1)
    out = out.reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize("layout", ["C", "sliced", "unaligned"])
@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_ids_of_any_integer_dtype_and_layout_read_alike(dtype, layout, batch):
    X, Y, h0 = batch
    Xd, Yd = laid_out(X.astype(dtype), layout), laid_out(Y.astype(dtype), layout)
    assert layout != "unaligned" or not Xd.flags.aligned or Xd.itemsize == 1
    got = rnnext.CharRNN(V, H).evaluate(Xd, Yd, h0)
    want = rnnext.CharRNN(V, H).evaluate(X.astype(np.int32), Y.astype(np.int32), h0)
    assert got[0] == want[0]
    assert np.array_equal(got[1], want[1])


@pytest.mark.parametrize("layout", ["C", "sliced", "unaligned"])
@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_a_bad_id_is_found_in_any_dtype_and_layout(dtype, layout, batch):
    X, Y, h0 = batch
    dt = np.dtype(dtype)
    bads = [V, np.iinfo(dt).max] + ([-1, np.iinfo(dt).min] if dt.kind == "i" else [])
    for bad in bads:
        Yb = Y.astype(dt)
        Yb[1, 2] = bad
        Yb = laid_out(Yb, layout)
        with pytest.raises(ValueError, match=rf"Y\[1, 2\] = {bad} is not a valid id"):
            rnnext.CharRNN(V, H).evaluate(X, Yb, h0)


def test_ids_are_checked_against_a_vocabulary_past_their_dtype():
    # every uint8 is below 300; an int8 is valid unless negative
    model = rnnext.CharRNN(300, H)
    h0 = np.zeros((2, H))

    def loss(X):
        return model.evaluate(X, X, h0)[0]

    top = np.array([[255, 0, 7], [1, 255, 254]])
    assert loss(top.astype(np.uint8)) == loss(top)
    small = np.array([[127, 0, 7], [1, 127, 126]])
    assert loss(small.astype(np.int8)) == loss(small)
    small[1, 0] = -128
    with pytest.raises(ValueError, match=r"X\[1, 0\] = -128 is not a valid id"):
        loss(small.astype(np.int8))


# h0


@pytest.mark.parametrize("kind", CALLS)
def test_h0_shape(kind, model, batch):
    X, Y, _ = batch
    with pytest.raises(ValueError, match=r"h0 has shape \(2, 5\), expected \(2, 4\)"):
        call(kind, model, X, Y, np.zeros((B, H + 1)))


@pytest.mark.parametrize("kind", CALLS)
def test_integer_h0_is_refused(kind, model, batch):
    X, Y, _ = batch
    with pytest.raises(TypeError, match=r"h0 must be a floating-point array"):
        call(kind, model, X, Y, np.zeros((B, H), dtype=np.int64))


@pytest.mark.parametrize("kind", CALLS)
def test_float64_h0_for_float32_model_is_converted(kind, batch):
    X, Y, _ = batch
    h0 = np.random.default_rng(2).uniform(-1, 1, size=(B, H))
    as64 = call(kind, rnnext.CharRNN(V, H), X, Y, h0)
    as32 = call(kind, rnnext.CharRNN(V, H), X, Y, h0.astype(np.float32))
    assert as64[0] == as32[0]
    assert as64[-1].dtype == np.float32
    assert np.array_equal(as64[-1], as32[-1])


@pytest.mark.parametrize("kind", CALLS)
def test_strided_h0_gives_the_same_result_as_a_copy(kind, batch):
    X, Y, _ = batch
    h0 = np.random.default_rng(3).uniform(-1, 1, size=(H, B)).T
    assert not h0.flags.c_contiguous
    strided = call(kind, rnnext.CharRNN(V, H), X, Y, h0)
    copied = call(kind, rnnext.CharRNN(V, H), X, Y, h0.copy())
    assert strided[0] == copied[0]
    assert np.array_equal(strided[-1], copied[-1])


# CharRNN construction and its params


@pytest.mark.parametrize("arg", ["vocab_size", "hidden_size"])
@pytest.mark.parametrize("value", [0, -3])
def test_sizes_must_be_positive(arg, value):
    sizes = {"vocab_size": V, "hidden_size": H, arg: value}
    with pytest.raises(ValueError, match=rf"{arg} must be at least 1, got {value}"):
        rnnext.CharRNN(**sizes)


@pytest.mark.parametrize("arg", ["vocab_size", "hidden_size"])
@pytest.mark.parametrize("value", [2.5, "16", None, True])
def test_sizes_must_be_ints(arg, value):
    sizes = {"vocab_size": V, "hidden_size": H, arg: value}
    with pytest.raises(TypeError, match=rf"{arg} must be an int, got"):
        rnnext.CharRNN(**sizes)


@pytest.mark.parametrize("dtype", [np.int32, np.float16, "complex128", "nonsense"])
def test_unknown_dtype(dtype):
    with pytest.raises(TypeError, match=r"dtype must be float32 or float64, got"):
        rnnext.CharRNN(V, H, dtype=dtype)


def test_zero_state_rows():
    with pytest.raises(ValueError, match=r"rows must be at least 1, got 0"):
        rnnext.CharRNN(V, H).zero_state(0)


@pytest.mark.parametrize("kind", CALLS)
@pytest.mark.parametrize("name", ["W_input", "W_hidden", "b_hidden", "W_softmax"])
def test_param_replaced_with_wrong_shape(kind, name, model, batch):
    f = entry(kind, model)
    shape = model.params[name].shape
    model.params[name] = np.zeros((shape[0] + 1, *shape[1:]))
    match = rf"model.params\['{name}'\] has shape"
    with pytest.raises(ValueError, match=match):
        f(*batch)


@pytest.mark.parametrize("kind", CALLS)
def test_param_replaced_with_wrong_dtype(kind, model, batch):
    f = entry(kind, model)
    model.params["W_hidden"] = model.params["W_hidden"].astype(np.float32)
    match = r"model.params\['W_hidden'\] must be a float64 array, got float32"
    with pytest.raises(TypeError, match=match):
        f(*batch)


def test_step_refuses_a_param_it_cannot_update_in_place(model, batch):
    opt = rnnext.Adagrad(model)
    model.params["W_hidden"] = np.asfortranarray(model.params["W_hidden"])
    with pytest.raises(ValueError, match=r"W_hidden must be C-contiguous"):
        opt.step(*batch)
    model.params["W_hidden"] = np.ascontiguousarray(model.params["W_hidden"])
    model.params["W_hidden"].flags.writeable = False
    with pytest.raises(ValueError, match=r"W_hidden is read-only"):
        opt.step(*batch)


@pytest.mark.parametrize("kind", CALLS)
def test_param_removed(kind, model, batch):
    f = entry(kind, model)
    del model.params["b_softmax"]
    with pytest.raises(KeyError, match=r"model.params lacks \['b_softmax'\]"):
        f(*batch)


# Adagrad options


@pytest.mark.parametrize("lr", [math.nan, -0.1, 0.0, math.inf])
def test_lr_must_be_finite_and_positive(lr, model):
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got"):
        rnnext.Adagrad(model, lr=lr)


@pytest.mark.parametrize("lr", [math.nan, -0.1])
def test_lr_changed_after_construction_is_checked(lr, model, batch):
    opt = rnnext.Adagrad(model)
    before = {name: w.copy() for name, w in model.params.items()}
    opt.lr = lr
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got"):
        opt.step(*batch)
    for name, w in model.params.items():
        assert np.array_equal(w, before[name]), f"{name} changed by a refused step"


@pytest.mark.parametrize("arg", ["eps", "initial_accumulator"])
def test_eps_and_accumulator_not_negative(arg, model):
    with pytest.raises(ValueError, match=rf"{arg} must be a finite number >= 0"):
        rnnext.Adagrad(model, **{arg: -1e-3})


def test_eps_and_accumulator_not_both_zero(model):
    with pytest.raises(ValueError, match=r"cannot both be 0"):
        rnnext.Adagrad(model, initial_accumulator=0.0, eps=0.0)


@pytest.mark.parametrize("arg", ["clip", "clip_norm"])
@pytest.mark.parametrize("value", [0.0, -1.0, math.nan])
def test_clip_must_be_positive(arg, value, model):
    with pytest.raises(ValueError, match=rf"{arg} must be a finite number > 0"):
        rnnext.Adagrad(model, **{arg: value})


def test_clip_and_clip_norm_exclusive(model):
    with pytest.raises(ValueError, match=r"clip and clip_norm cannot both be set"):
        rnnext.Adagrad(model, clip=1.0, clip_norm=5.0)


def test_adagrad_needs_a_char_rnn():
    with pytest.raises(TypeError, match=r"model must be a CharRNN, got dict"):
        rnnext.Adagrad({"W_input": np.zeros((V, H))})


def test_accumulator_replaced_with_wrong_shape(model, batch):
    opt = rnnext.Adagrad(model)
    opt.accumulators["W_hidden"] = np.zeros((H, H + 1))
    match = r"accumulator of W_hidden has shape \(4, 5\), expected \(4, 4\)"
    with pytest.raises(ValueError, match=match):
        opt.step(*batch)


def test_refused_step_changes_nothing(model, batch):
    X, Y, h0 = batch
    opt = rnnext.Adagrad(model)
    before = {name: w.copy() for name, w in model.params.items()}
    bad = Y.copy()
    bad[-1, -1] = V
    with pytest.raises(ValueError, match=r"is not a valid id"):
        opt.step(X, bad, h0)
    for name, w in model.params.items():
        assert np.array_equal(w, before[name]), f"{name} changed by a refused step"
        assert np.all(opt.accumulators[name] == 0.1), f"accum {name} changed"


# Threads


@pytest.mark.parametrize("n", [0, -2])
def test_num_threads_at_least_one(n):
    with pytest.raises(ValueError, match=rf"num_threads must be at least 1, got {n}"):
        rnnext.set_num_threads(n)


def test_num_threads_must_be_int():
    with pytest.raises(TypeError, match=r"num_threads must be an int, got float"):
        rnnext.set_num_threads(2.0)


@pytest.mark.parametrize(
    ("option", "value", "error", "match"),
    [
        ("clip", True, TypeError, "clip must be a number, got bool"),
        ("clip_norm", -1.0, ValueError, "clip_norm must be a finite number > 0"),
        ("eps", float("nan"), ValueError, "eps must be a finite number >= 0"),
    ],
)
def test_options_changed_after_construction_are_checked(
    model, batch, option, value, error, match
):
    opt = rnnext.Adagrad(model)
    setattr(opt, option, value)
    with pytest.raises(error, match=match):
        opt.step(*batch)
