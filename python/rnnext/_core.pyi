# Type stub of rnnext's compiled kernel (cpp/bindings.cpp, cpp/sample.cpp).
# Float arrays of one call share one dtype, float32 or float64; ids are any
# integer dtype with values in [0, V).
from typing import Any

import numpy as np
import numpy.typing as npt

_Floats = npt.NDArray[Any]
_Params = tuple[_Floats, _Floats, _Floats, _Floats, _Floats]

def evaluate(
    params: tuple[_Floats, ...],
    X: npt.NDArray[Any],
    Y: npt.NDArray[Any],
    h0: _Floats,
    num_threads: int,
) -> tuple[float, _Floats]: ...
def loss_and_grads(
    params: tuple[_Floats, ...],
    X: npt.NDArray[Any],
    Y: npt.NDArray[Any],
    h0: _Floats,
    num_threads: int,
) -> tuple[float, tuple[_Floats, ...], _Floats]: ...
def adagrad_step(
    params: tuple[_Floats, ...],
    accumulators: tuple[_Floats, ...],
    X: npt.NDArray[Any],
    Y: npt.NDArray[Any],
    h0: _Floats,
    lr: float,
    eps: float,
    clip: float,
    clip_norm: float,
    num_threads: int,
) -> tuple[float, _Floats, float, bool]: ...
def adagrad_steps(
    params: tuple[_Floats, ...],
    accumulators: tuple[_Floats, ...],
    rows: npt.NDArray[Any],
    steps: int,
    start: int,
    count: int,
    h0: _Floats,
    lr: float,
    eps: float,
    clip: float,
    clip_norm: float,
    num_threads: int,
) -> tuple[npt.NDArray[np.float64], _Floats]: ...
def sample(
    W_input: _Floats,
    W_hidden: _Floats,
    b_hidden: _Floats,
    W_softmax: _Floats,
    b_softmax: _Floats,
    prime_ids: npt.NDArray[Any],
    length: int,
    temperature: float,
    greedy: bool,
    top_k: int,
    seed: int,
    num: int,
    num_threads: int = 0,
) -> npt.NDArray[np.int32]: ...
def isa() -> str: ...
