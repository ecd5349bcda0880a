# Checkpoints: the round trip, equal bytes for equal states, the atomic
# write, and one test per way a file can be unusable.
import json
import os
import zipfile

import numpy as np
import pytest

from rnnext import Adagrad, CharRNN, Vocabulary
from rnnext.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    EpochLoss,
    load_checkpoint,
    save_checkpoint,
)
from rnnext.model import PARAM_NAMES

B, H = 3, 4


def make_checkpoint(dtype=np.float32, val=True):
    vocab = Vocabulary("abcdefg \n")
    model = CharRNN(len(vocab), H, seed=1, dtype=dtype)
    opt = Adagrad(model, lr=0.05, clip_norm=5.0)
    X = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    Y = (X + 1) % len(vocab)
    _, state = opt.step(X, Y, model.zero_state(B))
    rng = np.random.default_rng(7)
    rng.integers(10, size=3)
    config = {"hidden_size": H, "rows": B, "steps": 3, "dtype": np.dtype(dtype).name}
    history = [
        EpochLoss(2.5, 2.6 if val else None),
        EpochLoss(2.0, 2.2 if val else None),
    ]
    return Checkpoint(
        model, opt, vocab, config, 2, 5, state, rng, history, loss_sum=11.25
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("val", [True, False])
def test_round_trip_restores_everything(tmp_path, dtype, val):
    c = make_checkpoint(dtype, val)
    path = save_checkpoint(tmp_path / "c.npz", c)
    d = load_checkpoint(path)

    assert d.vocab == c.vocab and d.config == c.config
    assert (d.epoch, d.feed, d.loss_sum, d.history) == (2, 5, 11.25, c.history)
    for k in PARAM_NAMES:
        assert d.model.params[k].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(d.model.params[k], c.model.params[k])
        np.testing.assert_array_equal(
            d.optimizer.accumulators[k], c.optimizer.accumulators[k]
        )
        assert d.model.params[k].flags.writeable
    np.testing.assert_array_equal(d.state, c.state)
    o, p = d.optimizer, c.optimizer
    assert (o.lr, o.eps, o.clip, o.clip_norm) == (p.lr, p.eps, p.clip, p.clip_norm)
    assert o.model is d.model
    assert (
        d.rng.integers(2**63, size=4).tolist() == c.rng.integers(2**63, size=4).tolist()
    )


def test_loaded_model_trains_on_like_the_original(tmp_path):
    c = make_checkpoint()
    d = load_checkpoint(save_checkpoint(tmp_path / "c.npz", c))
    X = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 0]])
    Y = (X + 2) % len(c.vocab)
    for ckpt in (c, d):
        ckpt.optimizer.step(X, Y, ckpt.state)
    for k in PARAM_NAMES:
        np.testing.assert_array_equal(d.model.params[k], c.model.params[k])


def test_same_state_gives_same_bytes(tmp_path, monkeypatch):
    c = make_checkpoint()
    a = save_checkpoint(tmp_path / "a.npz", c).read_bytes()
    monkeypatch.setattr("time.time", lambda: 2e9)  # a later clock changes nothing
    b = save_checkpoint(tmp_path / "b.npz", c).read_bytes()
    assert a == b


def test_members_are_plain_arrays(tmp_path):
    path = save_checkpoint(tmp_path / "c.npz", make_checkpoint())
    with np.load(path, allow_pickle=False) as z:
        assert str(z["format"]) == "rnnext-checkpoint"
        assert int(z["version"]) == FORMAT_VERSION
        assert z["vocab"].dtype == np.uint32
        assert json.loads(z["config"].tobytes())["rows"] == B
        assert all(z[k].dtype != object for k in z.files)


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    save_checkpoint(path, make_checkpoint())
    before = path.read_bytes()

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    c = make_checkpoint()
    c.epoch, c.history = 3, [*c.history, EpochLoss(1.0, 1.1)]
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, c)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.npz"]


def test_saving_into_a_missing_directory_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        save_checkpoint(tmp_path / "nope" / "c.npz", make_checkpoint())


def test_non_finite_values_are_never_written(tmp_path):
    c = make_checkpoint()
    c.model.params["W_hidden"][0, 0] = np.nan
    with pytest.raises(ValueError, match="W_hidden holds NaN or infinity"):
        save_checkpoint(tmp_path / "c.npz", c)
    c = make_checkpoint()
    c.history[1] = EpochLoss(np.inf, 1.0)
    with pytest.raises(ValueError, match="history holds NaN"):
        save_checkpoint(tmp_path / "c.npz", c)
    assert os.listdir(tmp_path) == []


def test_inconsistent_checkpoints_are_refused_at_save(tmp_path):
    c = make_checkpoint()
    c.config["hidden_size"] = H + 1
    with pytest.raises(ValueError, match=r"config\['hidden_size'\] is 5"):
        save_checkpoint(tmp_path / "c.npz", c)
    c = make_checkpoint()
    c.state = np.zeros((B + 1, H), np.float32)
    with pytest.raises(ValueError, match=r"state .* shape \(4, 4\), expected"):
        save_checkpoint(tmp_path / "c.npz", c)
    c = make_checkpoint()
    c.history = c.history[:1]
    with pytest.raises(ValueError, match="history has 1 epochs, expected epoch=2"):
        save_checkpoint(tmp_path / "c.npz", c)


# Unusable files: every error names the file.


def rewrite(path, **changes):
    """Save the members of path again, with some replaced or (None) removed."""
    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            del members[k]
        else:
            members[k] = v
    np.savez(path, **members)


def json_array(obj):
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)


@pytest.fixture
def saved(tmp_path):
    return save_checkpoint(tmp_path / "c.npz", make_checkpoint())


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint: .*none.npz"):
        load_checkpoint(tmp_path / "none.npz")


def test_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("keep", [0, 10, 0.5, -30])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(keep * len(data)) if keep < 1 else keep])
    with pytest.raises(ValueError, match=r"c\.npz is not a usable rnnext checkpoint"):
        load_checkpoint(saved)


def test_corrupt_member(saved):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as z:
        info = z.getinfo("W_input.npy")
    data[info.header_offset + 200] ^= 0xFF  # inside the array data
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="cannot read it .*Bad CRC"):
        load_checkpoint(saved)


def test_text_file(tmp_path):
    path = tmp_path / "c.npz"
    path.write_text("First Citizen:\n")
    with pytest.raises(ValueError, match="not a zip archive"):
        load_checkpoint(path)


def test_other_npz(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(ValueError, match="no 'rnnext-checkpoint' format tag"):
        load_checkpoint(path)


def test_newer_version(saved):
    rewrite(saved, version=np.array(FORMAT_VERSION + 1))
    with pytest.raises(ValueError, match="format version 2, newer .* upgrade rnnext"):
        load_checkpoint(saved)


def test_missing_members(saved):
    rewrite(saved, state=None, rng=None)
    with pytest.raises(ValueError, match="it lacks state, rng"):
        load_checkpoint(saved)


def test_shape_inconsistent_with_config(saved):
    with np.load(saved) as z:
        config = json.loads(z["config"].tobytes())
    config["hidden_size"] = H + 1
    rewrite(saved, config=json_array(config))
    with pytest.raises(
        ValueError, match=r"W_input is a float32 array of shape \(9, 4\), expected"
    ):
        load_checkpoint(saved)


def test_wrong_dtype(saved):
    rewrite(saved, state=np.zeros((B, H), np.float64))
    with pytest.raises(
        ValueError, match="state is a float64 array .* expected float32"
    ):
        load_checkpoint(saved)


def test_nan_in_file(saved):
    with np.load(saved) as z:
        W = z["W_softmax"].copy()
    W[1, 1] = np.nan
    rewrite(saved, W_softmax=W)
    with pytest.raises(ValueError, match="W_softmax holds NaN"):
        load_checkpoint(saved)


def test_bad_json(saved):
    rewrite(saved, config=np.frombuffer(b"{not json", dtype=np.uint8))
    with pytest.raises(ValueError, match="config is not valid JSON"):
        load_checkpoint(saved)


def test_bad_rng(saved):
    rewrite(saved, rng=json_array({"bit_generator": "os.system"}))
    with pytest.raises(ValueError, match="rng names bit generator 'os.system'"):
        load_checkpoint(saved)


def test_pickled_member_is_refused(saved):
    rewrite(saved, epoch=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="cannot read it .*allow_pickle"):
        load_checkpoint(saved)


def test_rng_must_have_a_plain_integer_state(tmp_path):
    c = make_checkpoint()
    c.rng = np.random.Generator(np.random.Philox(1))
    with pytest.raises(ValueError, match="rng uses Philox; a checkpoint can hold"):
        save_checkpoint(tmp_path / "c.npz", c)
