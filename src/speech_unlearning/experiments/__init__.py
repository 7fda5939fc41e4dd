"""The benchmark: experiment grids, the results database, executors and paper-style reports.

- `presets`   BenchConfig (typed grid config), named presets demo / quick / fsdd / paper, YAML, --set;
- `plan`      the grid as runs with dependencies (corpus, original, retrain, tune, unlearn, evaluate);
- `costs`     time estimates from a per-model cost table, refined by measured runs;
- `store`     the SQLite results database (WAL) of a run folder;
- `executors` in-process, process-pool and Ray execution of runs;
- `stages`    what each stage does, through the data / models / training / evaluation / forgetting layers
              (unlearning only through `forgetting.apply`);
- `runner`    the driver: resume, crash recovery, failure recording, tuning selection;
- `tuning`    hyper-parameter choice on validation forget splits;
- `report`    Markdown / CSV / HTML tables and plots of a run folder (a package, one module per job);
- `choice_table` a `--method auto` choice table from a run folder's results.
"""
