"""Pre-trained models and what reads them: pool members on disk (:mod:`.members`), training and
loading pools (:mod:`.pool`), MTT's expert trajectories (:mod:`.experts`), a pool's diversity
(:mod:`.diversity`), and the guidance losses CLoM and CCLoM that a distillation adds
(:mod:`.guidance`)."""
