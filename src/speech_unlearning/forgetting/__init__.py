"""The forgetting layer: one way to apply a deletion request to a model, verify it and audit it.

It sits between `evaluation` (whose metrics it uses) and `experiments` / `cli` (which call it).
One job per module:

- `request`: what to forget (`DeletionRequest` for `forget`; `UnlearnRequest` for `unlearn`'s
  ratio, classes, speakers or split file), resolved to training recordings;
- `history`: the one history format every tool writes, reading the older ones; earlier
  forgotten recordings; the Original's recipe and the default time budget;
- `apply`: `apply(...)`, the only caller of the method engine, and `load_subject`;
- `verify`: acceptance checks, with sample sizes, intervals, tolerances and a no-op verdict;
  `acceptance` holds their thresholds, check and verdict types, `scoring` which rows they
  measure (the numbers themselves come from `evaluation.row_scores`);
- `audit`: audit.json / audit.md;
- `choice`: `--method auto` from a choice table handed to it;
- `output`: --out checks (before any compute) and the I/O error type;
- `deletion`: the steps of `forget` and `unlearn` (and the benchmark's unlearn stage) in order.
"""
