"""Evaluation: the protocol that trains the evaluation networks (:mod:`.protocol`), training and
testing them on any training set (:mod:`.evaluate`), and DD-Ranking's label-robust score
(:mod:`.scores`). Knows nothing of distillation, the run store or the study."""
