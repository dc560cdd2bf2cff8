"""The run store: one folder per run, named by the hash of its spec. A run's files
(:mod:`.runfiles`), the store that serves only what it can verify (:mod:`.runstore`), tidy frames
of stored runs (:mod:`.frames`), the units of work a distillation and an evaluation
(:mod:`.runs`), stored distillations that need recomputing (:mod:`.repair`) and the export of a
distilled set (:mod:`.export`)."""
