"""lmlib: the tested helper library of the book *From Bigrams to RLHF*.

Each module is taught in one chapter and reused by later ones; every public
object names the chapter that teaches it.
"""
from .mode import MODE_ENV, is_full, is_quick, mode, pick

__version__ = "0.1.0"
__all__ = ["MODE_ENV", "mode", "is_quick", "is_full", "pick", "__version__"]
