"""ptmdd: pre-trained models in dataset distillation."""

from .malloc import tune_malloc

__version__ = "0.1.0"

tune_malloc()  # see ptmdd_helpers.malloc; PTMDD_MALLOC_TUNING=0 turns it off
