"""Data: the real datasets as normalized tensors (:mod:`.datasets`; the offline ones built and cached
by :mod:`.offline`, a validation split of each by :mod:`.validation`) and their differentiable
augmentations (:mod:`.augment`, DSA and the evaluation augmentations). The bottom of the pipeline:
nothing here knows of networks, pools or runs."""
