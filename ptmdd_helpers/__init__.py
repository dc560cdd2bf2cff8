"""ptmdd: pre-trained models in dataset distillation.

Importing the package changes nothing in the process. The CLI and the study's worker processes
tune glibc's allocator (:func:`ptmdd_helpers.malloc.tune_malloc`); a notebook or script that wants
the same speed-up calls ``tune_malloc()`` once.
"""

from .malloc import tune_malloc

__version__ = "0.1.0"

__all__ = ["__version__", "tune_malloc"]
