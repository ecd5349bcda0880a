"""Text from a trained CharRNN: warm the state on a prime, then generate.

The per-character loop is C++ (_core.sample); this module checks the options
and turns ids into text. No beam search, and no start token: sampling always
begins from a prime of at least one character.
"""

from __future__ import annotations

import numpy as np

from rnnext import _core
from rnnext.model import CharRNN, check_float, check_int, get_num_threads
from rnnext.vocab import Vocabulary


def sample(
    model: CharRNN,
    vocab: Vocabulary,
    prime: str = "Thou",
    length: int = 50,
    *,
    temperature: float = 1.0,
    greedy: bool = False,
    top_k: int | None = None,
    seed: int = 0,
    num: int = 1,
) -> list[str]:
    """num texts, each prime followed by length generated characters.

    Every text starts from a zero state that reads the prime. Each next
    character is the argmax of the logits if greedy, else a draw from
    softmax(logits / temperature), limited to the top_k largest logits
    unless top_k is None. Text i is drawn with a generator seeded by
    (seed, i): the same seed gives the same texts whatever the thread count.
    """
    if not isinstance(model, CharRNN):
        raise TypeError(f"model must be a CharRNN, got {type(model).__name__}")
    if not isinstance(vocab, Vocabulary):
        raise TypeError(f"vocab must be a Vocabulary, got {type(vocab).__name__}")
    V = model.vocab_size
    if len(vocab) != V:
        raise ValueError(
            f"vocab has {len(vocab)} characters but the model's vocab_size is "
            f"{V}; use the vocabulary the model was trained with"
        )
    W_input, W_hidden, b_hidden, W_softmax, b_softmax = model.param_tuple()

    if not isinstance(prime, str):
        raise TypeError(f"prime must be a str, got {type(prime).__name__}")
    if not prime:
        raise ValueError(
            "prime must have at least one character (the model has no start "
            "token to begin from), got ''"
        )
    unknown = sorted(set(prime) - set(vocab.chars))
    if unknown:
        listed = ", ".join(repr(c) for c in unknown)
        raise ValueError(f"prime has characters not in the vocabulary: {listed}")

    length = check_int(length, "length", minimum=1)
    temperature = check_float(temperature, "temperature", positive=True)
    if not isinstance(greedy, (bool, np.bool_)):
        raise TypeError(f"greedy must be a bool, got {type(greedy).__name__}")
    if top_k is not None:
        top_k = check_int(top_k, "top_k", minimum=1)
        if top_k > V:
            raise ValueError(
                f"top_k must be at most the vocabulary size {V} (or None for "
                f"no limit), got {top_k}"
            )
    seed = check_int(seed, "seed", minimum=0)
    if seed >= 2**64:
        raise ValueError(f"seed must be below 2**64, got {seed}")
    num = check_int(num, "num", minimum=1)

    ids = _core.sample(
        W_input,
        W_hidden,
        b_hidden,
        W_softmax,
        b_softmax,
        vocab.encode(prime).astype(np.int32),
        length,
        temperature,
        bool(greedy),
        top_k or 0,
        seed,
        num,
        get_num_threads(),
    )
    return [prime + vocab.decode(row) for row in ids]
