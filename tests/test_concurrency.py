# Concurrency: models trained in threads at once end exactly where they end
# when trained one after another; a kernel call lets other Python threads
# run; models, optimizers and vocabularies survive pickle, deepcopy and a
# worker process bit for bit; results do not depend on the thread count.
# Speed is not measured here.
#
# B rows, T steps, H hidden, V vocabulary.
import copy
import multiprocessing
import pickle
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

import rnnext
from rnnext.model import PARAM_NAMES

# more rows than one block of the kernel, so that calls split across threads
V, H, B, T = 31, 24, 20, 16
FEEDS = 12
WORKER_TIMEOUT = 600  # seconds; generous for a sanitizer build


@pytest.fixture(autouse=True)
def default_threads():
    yield
    rnnext.set_num_threads(None)


def feeds(seed, count=FEEDS):
    rng = np.random.default_rng(seed)
    return [
        (rng.integers(0, V, size=(B, T)), rng.integers(0, V, size=(B, T)))
        for _ in range(count)
    ]


def train(seed, dtype=np.float64, opt=None):
    """(model, optimizer, losses, final state) after FEEDS Adagrad steps."""
    if opt is None:
        model = rnnext.CharRNN(V, H, seed=seed, dtype=dtype)
        opt = rnnext.Adagrad(model, lr=0.05, clip_norm=5.0)
    h = opt.model.zero_state(B)
    losses = []
    for X, Y in feeds(seed):
        loss, h = opt.step(X, Y, h)
        losses.append(loss)
    return opt.model, opt, losses, h


def assert_identical(a, b):
    """Two results of train(): equal to the last bit."""
    (ma, oa, la, ha), (mb, ob, lb, hb) = a, b
    assert la == lb, f"losses differ: {la} vs {lb}"
    assert np.array_equal(ha, hb), "final states differ"
    for k in PARAM_NAMES:
        assert ma.params[k].dtype == mb.params[k].dtype, k
        assert np.array_equal(ma.params[k], mb.params[k]), f"{k} differs"
        assert np.array_equal(oa.accumulators[k], ob.accumulators[k]), k


# -- threads


@pytest.mark.parametrize("threads_per_call", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_models_trained_in_threads_equal_models_trained_in_turn(
    dtype, threads_per_call
):
    rnnext.set_num_threads(threads_per_call)
    seeds = range(4)
    in_turn = [train(s, dtype) for s in seeds]
    start = threading.Barrier(len(seeds))

    def work(seed):
        start.wait()
        return train(seed, dtype)

    with ThreadPoolExecutor(len(seeds)) as pool:
        at_once = list(pool.map(work, seeds))
    for a, b in zip(in_turn, at_once):
        assert_identical(a, b)


def test_one_model_evaluated_from_many_threads_gives_one_answer():
    model = rnnext.CharRNN(V, H, seed=3, dtype=np.float64)
    (X, Y), *_ = feeds(3)
    h0 = model.zero_state(B)
    want = model.loss_and_grads(X, Y, h0)

    def work(i):
        rnnext.set_num_threads(1 + i % 3)  # every thread count, interleaved
        return [model.loss_and_grads(X, Y, h0) for _ in range(20)]

    with ThreadPoolExecutor(6) as pool:
        for results in pool.map(work, range(6)):
            for loss, grads, hT in results:
                assert loss == want[0] and np.array_equal(hT, want[2])
                for k in grads:
                    assert np.array_equal(grads[k], want[1][k]), k


def count_during(call):
    """How often another Python thread counted while call() ran.

    The switch interval is made so long that the calling thread keeps the
    GIL unless it gives it up: the count is then 0 for a call that holds
    the GIL, and positive for one that releases it long enough for the
    counting thread to wake.
    """
    count, stop = [0], [False]

    def counter():
        while not stop[0]:
            count[0] += 1
            if count[0] % 1000 == 0:
                time.sleep(0.0005)  # hands the GIL back

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        t = threading.Thread(target=counter)
        t.start()
        before = count[0]
        call()
        during = count[0] - before
        stop[0] = True
        t.join()
    finally:
        sys.setswitchinterval(interval)
    return during


def test_kernel_calls_release_the_gil():
    H_big = 256
    model = rnnext.CharRNN(V, H_big, dtype=np.float64)
    rng = np.random.default_rng(0)
    X = rng.integers(0, V, size=(64, 128))
    h0 = np.zeros((64, H_big))
    params = model.param_tuple()
    accums = tuple(np.full_like(w, 0.1) for w in params)
    calls = {
        "evaluate": lambda: rnnext._core.evaluate(params, X, X, h0, 1),
        "loss_and_grads": lambda: rnnext._core.loss_and_grads(params, X, X, h0, 1),
        "adagrad_step": lambda: rnnext._core.adagrad_step(
            params, accums, X, X, h0, 0.1, 1e-10, 0.0, 0.0, 1
        ),
    }
    # the method tells a call that keeps the GIL from one that does not
    assert count_during(lambda: sum(range(3_000_000))) == 0
    for name, call in calls.items():
        assert count_during(call) > 0, f"{name} kept the GIL"


def test_ids_changed_by_another_thread_during_a_call_stay_in_the_model():
    # The ids are checked while the GIL is held and read by the kernel after
    # it is released; a thread that then writes an id outside [0, V) must
    # not make the kernel index past the parameters: it is read as 0.
    H_big, B_big, T_big = 64, 64, 256
    model = rnnext.CharRNN(V, H_big, dtype=np.float32)
    opt = rnnext.Adagrad(model, lr=0.01)
    X = np.random.default_rng(1).integers(0, V, size=(B_big, T_big))
    X = X.astype(np.uint16)
    h0 = model.zero_state(B_big)
    stop = threading.Event()

    def scribble():
        # one id at a time, so that a check mostly sees it put back
        rng = np.random.default_rng(2)
        while not stop.is_set():
            i, j = rng.integers(B_big), rng.integers(T_big)
            good = X[i, j]
            X[i, j] = np.iinfo(np.uint16).max
            X[i, j] = good

    scribbler = threading.Thread(target=scribble)
    scribbler.start()
    done = 0
    try:
        for _ in range(100):
            for call in (opt.step, model.evaluate):
                try:
                    loss, _ = call(X, X, h0)
                except ValueError as e:  # the check saw the bad id
                    assert "is not a valid id" in str(e)
                else:
                    assert np.isfinite(loss)
                    done += 1
    finally:
        stop.set()
        scribbler.join()
    assert done > 0
    assert (X < V).all()
    for k, w in model.params.items():
        assert np.isfinite(w).all(), k


# -- thread count


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_the_thread_count(dtype):
    (X, Y), *_ = feeds(5)
    results = {}
    for n in (1, 2, 3, 7):
        rnnext.set_num_threads(n)
        model = rnnext.CharRNN(V, H, seed=5, dtype=dtype)
        h0 = np.random.default_rng(6).uniform(-1, 1, (B, H)).astype(dtype)
        trained = train(5, dtype)
        opt = rnnext.Adagrad(rnnext.CharRNN(V, H, seed=5, dtype=dtype))
        rows = np.random.default_rng(7).integers(0, V, size=(B, 3 * T + 1))
        results[n] = (
            model.evaluate(X, Y, h0),
            model.loss_and_grads(X, Y, h0),
            trained,
            opt.steps(rows, T, 0, 3, h0),
            opt.model.params,
        )
    first = results[1]
    for n, r in results.items():
        (le, he), (lg, g, hg), tr, (ls, hs), p = r
        assert le == first[0][0] and np.array_equal(he, first[0][1]), n
        assert lg == first[1][0] and np.array_equal(hg, first[1][2]), n
        for k in g:
            assert np.array_equal(g[k], first[1][1][k]), (n, k)
        assert_identical(tr, first[2])
        assert np.array_equal(ls, first[3][0]) and np.array_equal(hs, first[3][1])
        for k in PARAM_NAMES:
            assert np.array_equal(p[k], first[4][k]), (n, k)


# -- pickle, deepcopy and worker processes


def test_vocabulary_pickles_and_deep_copies():
    v = rnnext.Vocabulary.from_text("To be, or not to be: \u00e6\U0001f600\n")
    text = "be or not"
    for w in (pickle.loads(pickle.dumps(v)), copy.deepcopy(v)):
        assert w == v and w.chars == v.chars and len(w) == len(v)
        assert np.array_equal(w.encode(text), v.encode(text))
        assert w.decode(v.encode(text)) == text


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_models_and_optimizers_pickle_and_deep_copy_with_equal_params(dtype):
    model, opt, _, _ = train(1, dtype)
    for o in (pickle.loads(pickle.dumps(opt)), copy.deepcopy(opt)):
        m = o.model
        assert m is not model and type(o) is rnnext.Adagrad
        assert (m.vocab_size, m.hidden_size, m.dtype) == (V, H, np.dtype(dtype))
        assert (o.lr, o.eps, o.clip, o.clip_norm) == (0.05, 1e-10, None, 5.0)
        for k in PARAM_NAMES:
            assert m.params[k].dtype == dtype and o.accumulators[k].dtype == dtype
            assert np.array_equal(m.params[k], model.params[k]), k
            assert np.array_equal(o.accumulators[k], opt.accumulators[k]), k


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_deep_copy_trains_on_exactly_like_the_original(dtype):
    _, opt, _, _ = train(1, dtype)
    twin = copy.deepcopy(opt)
    assert_identical(train(2, opt=opt), train(2, opt=twin))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_unpickled_model_trains_on_exactly_like_the_original(dtype):
    _, opt, _, _ = train(1, dtype)
    twin = pickle.loads(pickle.dumps(opt))
    assert_identical(train(2, opt=opt), train(2, opt=twin))


def train_in_worker(seed, dtype_name, threads):
    """Runs in a worker process: train() there, the arrays sent back."""
    rnnext.set_num_threads(threads)
    model, opt, losses, h = train(seed, np.dtype(dtype_name))
    return dict(model.params), dict(opt.accumulators), losses, h


def assert_same_as_worker(local, remote):
    model, opt, losses, h = local
    params, accums, r_losses, r_h = remote
    assert losses == r_losses and np.array_equal(h, r_h)
    for k in PARAM_NAMES:
        assert params[k].dtype == model.dtype, k
        assert np.array_equal(params[k], model.params[k]), k
        assert np.array_equal(accums[k], opt.accumulators[k]), k


@pytest.mark.parametrize("method", ["spawn", "fork"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_model_trained_in_a_worker_process_equals_one_trained_here(method, dtype):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    rnnext.set_num_threads(3)
    local = [train(s, np.dtype(dtype)) for s in (0, 1)]  # the pool is running
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        jobs = [pool.submit(train_in_worker, s, dtype, n) for s, n in ((0, 1), (1, 3))]
        remote = [job.result(timeout=WORKER_TIMEOUT) for job in jobs]
    for a, b in zip(local, remote):
        assert_same_as_worker(a, b)
