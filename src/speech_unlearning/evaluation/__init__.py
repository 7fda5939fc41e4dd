"""Evaluation layer: how well was the forget set forgotten, and what utility remains?

Metrics register themselves in `METRICS` (accuracy, loss_mia, svc_mia, probe, relearn, time);
`evaluate_unlearning` runs them on the unlearned model (and on the original and retrained
models when given) and returns a report dict, which `write_report` saves as report.json and
report.md. The attacks are also usable on plain arrays: `loss_mia`, `svc_mia`,
`representation_probe`, `relearn_attack`; `gap_to_retrain` compares two metric tables,
`gap_of_means` the averages of several.
"""

from .gap import gap_of_means, gap_to_retrain
from .metrics import METRICS, EvalContext, EvalSettings, Metric, MetricSkipped, metric_names, register_metric
from .mia import MIAInputError, loss_mia, modified_entropy, prediction_entropy, svc_mia, true_label_confidence
from .probe import representation_probe
from .relearn import RelearnConfig, relearn_attack
from .report import SCHEMA_VERSION, evaluate_unlearning, format_markdown, format_summary, write_report

__all__ = [
    "METRICS",
    "SCHEMA_VERSION",
    "EvalContext",
    "EvalSettings",
    "MIAInputError",
    "Metric",
    "MetricSkipped",
    "RelearnConfig",
    "evaluate_unlearning",
    "format_markdown",
    "format_summary",
    "gap_of_means",
    "gap_to_retrain",
    "loss_mia",
    "metric_names",
    "modified_entropy",
    "prediction_entropy",
    "register_metric",
    "relearn_attack",
    "representation_probe",
    "svc_mia",
    "true_label_confidence",
    "write_report",
]
