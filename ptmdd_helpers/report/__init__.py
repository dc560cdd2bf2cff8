"""The report: what the study notebooks call to show and decide their results.

Figures (:mod:`.plots`, :mod:`.sweeps`, :mod:`.figures`), verdicts paired by seed (:mod:`.verdicts`,
their arithmetic in :mod:`.intervals`), claims as
the profile declares them and the transfer across architectures (:mod:`.claims`), a batch's claims
as one family (:mod:`.family`) and the tables, per-notebook report and index (:mod:`.tables`). A notebook does
``from ptmdd_helpers import report`` and uses the names below. Knows nothing of the study."""

from ..evaluation.scores import label_robust_score, lrs_summary, lrs_table
from .claims import declared, method_references, transfer_gap, transfer_table, verdict_table
from .figures import (
    diversity_plot,
    paired_difference_plot,
    paired_plot,
    synthetic_images_plot,
    texts_outside,
)
from .intervals import decide, paired_interval, welch_interval
from .plots import (
    COLUMN_LABELS,
    accuracy_plot,
    column_label,
    per_seed_points,
    reference_lines,
    rotate_labels,
    sd_bar,
)
from .sweeps import alpha_plot, epoch_plot, scatter_plot
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
    seed_means,
    select,
)

__all__ = [
    "declared", "method_references", "transfer_gap", "transfer_table", "verdict_table",
    "ACCURACY", "COLUMN_LABELS", "LABELS", "RULE", "Report", "SEED", "SavedFiles", "Verdict",
    "accuracy_plot", "accuracy_table", "alpha_plot", "column_label", "compare", "decide",
    "distill_cost_table", "diversity_plot", "epoch_plot", "gain_by_pool", "label_robust_score",
    "lrs_summary", "lrs_table", "paired_difference_plot", "paired_interval", "paired_plot",
    "per_seed_points", "pool_cost_table", "record_batch", "reference_lines", "rotate_labels",
    "scatter_plot", "sd_bar", "seed_means", "select", "synthetic_images_plot", "texts_outside",
    "to_latex", "to_markdown", "welch_interval", "write_index",
]
