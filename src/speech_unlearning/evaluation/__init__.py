"""Evaluation layer: how well was the forget set forgotten, and what utility remains?

Metrics register themselves in `METRICS` (accuracy, loss_mia, svc_mia, probe, relearn, time);
`evaluate_unlearning` runs them on the unlearned model (and on the original and retrained
models when given) and returns a report dict, which `write_report` saves as report.json and
report.md. The definitions they share live in `row_scores` (correctness, per-example loss,
accuracy, the loss MIA's matched non-members); its `RowScores` applies them to any rows a
caller picks, as verification of a deletion request does. The attacks are also usable on plain
arrays: `loss_mia`, `svc_mia`, `representation_probe`, `relearn_attack`; `gap_to_retrain`
compares two metric tables, `gap_of_means` the averages of several.

Scores of K unlearned models against K Retrains register in `ENSEMBLE_METRICS`
(forgetting_quality, ulira, informed_attack) and run through `evaluate_ensemble`; on plain arrays
they are the functions of the modules of the same names (`forgetting_quality.forgetting_quality`,
`final_score`, `ulira_attack`, `informed_attack.informed_attack`).
`indistinguishability` tests every metric against the Retrains' spread; `nothing_to_forget` and
`is_no_op` flag splits and methods where a pass means nothing. `confidence_matrix` and
`feature_tensor` turn a list of models into their per-example inputs.
"""

from .ensemble import (
    ENSEMBLE_METRICS,
    EnsembleOutputs,
    EnsembleSettings,
    ModelPool,
    evaluate_ensemble,
    model_pool,
    register_ensemble_metric,
)
from .forgetting_quality import ForgettingQuality, example_epsilons, final_score
from .gap import gap_of_means, gap_to_retrain
from .intervals import wilson_interval
from .spread import (
    RetrainComparison,
    compare_with_retrains,
    indistinguishability,
    is_no_op,
    metric_values,
    nothing_to_forget,
)
from .informed_attack import ATTACK_CLASSIFIERS, InformedAttackConfig
from .metrics import (
    METRICS,
    EvalContext,
    EvalSettings,
    Metric,
    MetricSkipped,
    metric_names,
    metrics_reading,
    register_metric,
)
from .mia import MIAInputError, loss_mia, modified_entropy, prediction_entropy, svc_mia, true_label_confidence
from .per_example import (
    FEATURE_NAMES,
    attack_features,
    confidence_matrix,
    feature_tensor,
    logit_scaled_confidence,
    stack_logits,
)
from .probe import representation_probe
from .relearn import RelearnConfig, relearn_attack
from .report import SCHEMA_VERSION, evaluate_unlearning, format_markdown, format_summary, write_report
from .roc import roc_auc, tpr_at_fpr
from .row_scores import (
    RowScores,
    accuracy_of,
    correct_predictions,
    example_losses,
    loss_mia_or_none,
    matched_nonmembers,
    mean_class_accuracy_of,
)
from .ulira import ULiRAConfig, ulira_attack, ulira_scores

__all__ = [
    "wilson_interval",
    "ATTACK_CLASSIFIERS",
    "ENSEMBLE_METRICS",
    "FEATURE_NAMES",
    "METRICS",
    "SCHEMA_VERSION",
    "EnsembleOutputs",
    "EnsembleSettings",
    "EvalContext",
    "EvalSettings",
    "ForgettingQuality",
    "InformedAttackConfig",
    "MIAInputError",
    "Metric",
    "MetricSkipped",
    "ModelPool",
    "RelearnConfig",
    "RetrainComparison",
    "RowScores",
    "ULiRAConfig",
    "accuracy_of",
    "attack_features",
    "compare_with_retrains",
    "confidence_matrix",
    "correct_predictions",
    "evaluate_ensemble",
    "evaluate_unlearning",
    "example_epsilons",
    "example_losses",
    "feature_tensor",
    "final_score",
    "format_markdown",
    "format_summary",
    "gap_of_means",
    "gap_to_retrain",
    "indistinguishability",
    "is_no_op",
    "logit_scaled_confidence",
    "loss_mia",
    "loss_mia_or_none",
    "matched_nonmembers",
    "mean_class_accuracy_of",
    "metric_names",
    "metrics_reading",
    "metric_values",
    "model_pool",
    "modified_entropy",
    "nothing_to_forget",
    "prediction_entropy",
    "register_ensemble_metric",
    "register_metric",
    "relearn_attack",
    "representation_probe",
    "roc_auc",
    "stack_logits",
    "svc_mia",
    "tpr_at_fpr",
    "true_label_confidence",
    "ulira_attack",
    "ulira_scores",
    "write_report",
]
