"""ptmdd: pre-trained models in dataset distillation."""
__version__ = "0.1.0"
