"""Data: the real datasets as normalized tensors (:mod:`.datasets`) and their differentiable
augmentations (:mod:`.augment`, DSA and the evaluation augmentations). The bottom of the pipeline:
nothing here knows of networks, pools or runs."""
