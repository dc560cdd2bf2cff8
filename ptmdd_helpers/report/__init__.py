"""The report: what the study notebooks call to show and decide their results.

Figures (:mod:`.plots`), verdicts paired by seed (:mod:`.verdicts`), a batch's claims as one family
(:mod:`.family`) and the tables, per-notebook report and index (:mod:`.tables`). A notebook does
``from ptmdd_helpers import report`` and uses the names below. Knows nothing of the study."""

from ..evaluation.scores import label_robust_score, lrs_summary, lrs_table
from .plots import (
    accuracy_plot,
    alpha_plot,
    diversity_plot,
    epoch_plot,
    paired_plot,
    per_seed_points,
    rotate_labels,
    scatter_plot,
    sd_bar,
    synthetic_images_plot,
)
from .tables import (
    LABELS,
    Report,
    SavedFiles,
    accuracy_table,
    distill_cost_table,
    gain_by_pool,
    pool_cost_table,
    record_batch,
    to_latex,
    to_markdown,
    write_index,
)
from .verdicts import (
    ACCURACY,
    RULE,
    SEED,
    Verdict,
    compare,
    decide,
    paired_interval,
    seed_means,
    select,
    welch_interval,
)

__all__ = [
    "ACCURACY", "LABELS", "RULE", "Report", "SEED", "SavedFiles", "Verdict", "accuracy_plot",
    "accuracy_table", "alpha_plot", "compare", "decide", "distill_cost_table", "diversity_plot",
    "epoch_plot", "gain_by_pool", "label_robust_score", "lrs_summary", "lrs_table",
    "paired_interval", "paired_plot", "per_seed_points", "pool_cost_table", "record_batch",
    "rotate_labels", "scatter_plot", "sd_bar", "seed_means", "select", "synthetic_images_plot",
    "to_latex", "to_markdown", "welch_interval", "write_index",
]
