"""rnnext: character-level recurrent networks with a fused C++ kernel."""

from rnnext import _core, reference

__all__ = ["_core", "reference"]
__version__ = "0.1.0"
