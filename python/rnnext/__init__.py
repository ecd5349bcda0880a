"""rnnext: character-level recurrent networks with a fused C++ kernel."""

from rnnext import _core, reference
from rnnext.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from rnnext.corpus import Corpus, bundled_corpus_path, load_corpus
from rnnext.model import Adagrad, CharRNN, get_num_threads, set_num_threads
from rnnext.sampling import sample
from rnnext.trainer import TrainConfig, Trainer, TrainingDiverged
from rnnext.vocab import Vocabulary, read_text

__all__ = [
    "_core",
    "Adagrad",
    "CharRNN",
    "get_num_threads",
    "set_num_threads",
    "reference",
    "Corpus",
    "Vocabulary",
    "bundled_corpus_path",
    "load_corpus",
    "read_text",
    "sample",
    "Checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
]
__version__ = "0.1.0"
