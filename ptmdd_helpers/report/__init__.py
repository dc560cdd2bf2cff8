"""The report: what the study notebooks call to show and decide their results.

Figures (:mod:`.plots`, :mod:`.figures`), verdicts paired by seed (:mod:`.verdicts`), claims as
the profile declares them and the transfer across architectures (:mod:`.claims`), a batch's claims
as one family (:mod:`.family`) and the tables, per-notebook report and index (:mod:`.tables`). A notebook does
``from ptmdd_helpers import report`` and uses the names below. Knows nothing of the study."""

from ..evaluation.scores import label_robust_score, lrs_summary, lrs_table
from .claims import declared, transfer_gap, transfer_table, verdict_table
from .plots import (
    COLUMN_LABELS,
    accuracy_plot,
    alpha_plot,
    column_label,
    diversity_plot,
    epoch_plot,
    paired_difference_plot,
    paired_plot,
    per_seed_points,
    reference_lines,
    rotate_labels,
    scatter_plot,
    sd_bar,
    synthetic_images_plot,
    texts_outside,
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
    "declared", "transfer_gap", "transfer_table", "verdict_table",
    "ACCURACY", "COLUMN_LABELS", "LABELS", "RULE", "Report", "SEED", "SavedFiles", "Verdict",
    "accuracy_plot", "accuracy_table", "alpha_plot", "column_label", "compare", "decide",
    "distill_cost_table", "diversity_plot", "epoch_plot", "gain_by_pool", "label_robust_score",
    "lrs_summary", "lrs_table", "paired_difference_plot", "paired_interval", "paired_plot",
    "per_seed_points", "pool_cost_table", "record_batch", "reference_lines", "rotate_labels",
    "scatter_plot", "sd_bar", "seed_means", "select", "synthetic_images_plot", "texts_outside",
    "to_latex", "to_markdown", "welch_interval", "write_index",
]
