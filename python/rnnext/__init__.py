"""rnnext: character-level recurrent networks with a fused C++ kernel."""

from rnnext import _core

__all__ = ["_core"]
__version__ = "0.1.0"
