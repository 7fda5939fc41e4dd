"""The results database: one SQLite file (`runs.sqlite`, WAL mode) per run folder.

One row per run, keyed by the sha256 of the run's canonical config: stage, status (pending /
running / done / failed), the error text of a failure, the metrics JSON returned by the
evaluation layer, timings, artefact paths (relative to the run folder) and timestamps.

Invariants the runner relies on:
- a row becomes "done" only after the run's artefacts were written completely (atomically),
  so a crash never leaves a "done" row without its files;
- a "running" row found when a grid starts was interrupted by a crash: it is run again;
- only the driver process writes; workers return their results to it.

A `tuning` table records every hyper-parameter choice made by `--tune` with its provenance.
The K Retrains of one split (`retrain_seeds`) are rows whose configs differ only in "init_seed";
`reference_sets` groups them back into the split's reference set.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

STATUSES = ("pending", "running", "done", "failed")
DB_NAME = "runs.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    config_hash TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    label TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL,
    task TEXT, corpus TEXT, model TEXT, seed INTEGER, scenario TEXT, ratio REAL, method TEXT,
    error TEXT,
    metrics TEXT,
    timings TEXT,
    artefacts TEXT,
    seconds REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS runs_stage_status ON runs (stage, status);
CREATE TABLE IF NOT EXISTS tuning (
    group_key TEXT PRIMARY KEY,
    task TEXT, corpus TEXT, model TEXT, scenario TEXT, method TEXT,
    choice TEXT NOT NULL,
    provenance TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays, Paths and tuples inside metrics become plain JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


@dataclass(frozen=True)
class RunRecord:
    """One row of the runs table, JSON columns decoded."""

    key: str
    stage: str
    status: str
    label: str
    config: dict[str, Any]
    error: str | None = None
    metrics: dict[str, Any] | None = None
    timings: dict[str, Any] = field(default_factory=dict)
    artefacts: dict[str, str] = field(default_factory=dict)
    seconds: float | None = None
    attempts: int = 0
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    task: str | None = None
    corpus: str | None = None
    model: str | None = None
    seed: int | None = None
    scenario: str | None = None
    ratio: float | None = None
    method: str | None = None


class ResultStore:
    """The runs database of one run folder. Use as a context manager or call `close()`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(self.path, timeout=30.0)
        self.connection.row_factory = sqlite3.Row
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        with self.connection:
            self.connection.executescript(_SCHEMA)
            self.connection.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    @classmethod
    def in_folder(cls, run_dir: str | Path) -> "ResultStore":
        return cls(Path(run_dir) / DB_NAME)

    @classmethod
    def existing(cls, run_dir: str | Path) -> "ResultStore":
        """The store of a folder `speech-unlearn bench` wrote; FileNotFoundError naming the folder if it
        has none (`in_folder` would create an empty one there)."""
        database = Path(run_dir) / DB_NAME
        if not database.is_file():
            raise FileNotFoundError(f"no results database in {run_dir} (expected {database}); "
                                    "run `speech-unlearn bench` first")
        return cls(database)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------

    @staticmethod
    def _record(row: sqlite3.Row) -> RunRecord:
        return RunRecord(
            key=row["config_hash"],
            stage=row["stage"],
            status=row["status"],
            label=row["label"],
            config=_load(row["config"]),
            error=row["error"],
            metrics=_load(row["metrics"]),
            timings=_load(row["timings"]) or {},
            artefacts=_load(row["artefacts"]) or {},
            seconds=row["seconds"],
            attempts=row["attempts"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            **{name: row[name] for name in ("task", "corpus", "model", "seed", "scenario", "ratio", "method")},
        )

    def get(self, key: str) -> RunRecord | None:
        row = self.connection.execute("SELECT * FROM runs WHERE config_hash = ?", (key,)).fetchone()
        return None if row is None else self._record(row)

    def records(self, stage: str | None = None, status: str | None = None) -> list[RunRecord]:
        """Rows, optionally filtered by stage and status, oldest first."""
        query, params = "SELECT * FROM runs WHERE 1=1", []
        if stage is not None:
            query += " AND stage = ?"
            params.append(stage)
        if status is not None:
            query += " AND status = ?"
            params.append(status)
        rows = self.connection.execute(query + " ORDER BY created_at, rowid", params).fetchall()
        return [self._record(row) for row in rows]

    def reference_sets(self, status: str | None = "done") -> dict[str, list[RunRecord]]:
        """{set id: the Retrain rows of one split (same task, corpus, backbone, seed, split and training
        settings), ordered by their init seed}; the set id is the sha256 of that shared config."""
        from ..io import sha256_json

        sets: dict[str, list[RunRecord]] = {}
        for record in self.records(stage="retrain", status=status):
            shared = {key: value for key, value in record.config.items() if key != "init_seed"}
            sets.setdefault(sha256_json(shared), []).append(record)
        for members in sets.values():
            members.sort(key=lambda record: record.config.get("init_seed", record.config.get("seed", 0)))
        return sets

    def statuses(self) -> dict[str, str]:
        """run key -> status for every row."""
        return dict(self.connection.execute("SELECT config_hash, status FROM runs").fetchall())

    def status_counts(self) -> dict[str, dict[str, int]]:
        """{stage: {status: count}}."""
        counts: dict[str, dict[str, int]] = {}
        for stage, status, count in self.connection.execute(
            "SELECT stage, status, COUNT(*) FROM runs GROUP BY stage, status"
        ):
            counts.setdefault(stage, {})[status] = count
        return counts

    # -- writing (driver only) -------------------------------------------------------------------

    def ensure(self, runs: Iterable[Any]) -> None:
        """Insert a "pending" row for every run (a `plan.Run`) that has none yet."""
        now = utc_now()
        with self.connection:
            self.connection.executemany(
                "INSERT OR IGNORE INTO runs (config_hash, stage, status, label, config, task, corpus, model, seed,"
                " scenario, ratio, method, created_at) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [self._identity(run) + (now,) for run in runs],
            )

    @staticmethod
    def _identity(run: Any) -> tuple:
        config = run.config
        split = config.get("split") or {}
        return (
            run.key, run.stage, run.label, _dump(config), config.get("task"), config.get("corpus"),
            config.get("model"), config.get("seed"), split.get("scenario"), split.get("ratio"), config.get("method"),
        )

    def recover_interrupted(self) -> list[str]:
        """Turn "running" rows (left by a crash) back into "pending"; returns their keys."""
        keys = [row[0] for row in self.connection.execute("SELECT config_hash FROM runs WHERE status = 'running'")]
        with self.connection:
            self.connection.execute(
                "UPDATE runs SET status = 'pending', error = 'interrupted: found running at start' "
                "WHERE status = 'running'"
            )
        return keys

    def reset(self, keys: Iterable[str]) -> None:
        """Set rows back to "pending" (e.g. failed runs under --retry-failed)."""
        with self.connection:
            self.connection.executemany("UPDATE runs SET status = 'pending' WHERE config_hash = ?", [(k,) for k in keys])

    def mark_running(self, run: Any) -> None:
        """Record that `run` started (the row must exist; see `ensure`)."""
        with self.connection:
            self.connection.execute(
                "UPDATE runs SET status = 'running', started_at = ?, finished_at = NULL, error = NULL,"
                " attempts = attempts + 1 WHERE config_hash = ?",
                (utc_now(), run.key),
            )

    def mark_done(
        self,
        run: Any,
        metrics: dict[str, Any] | None,
        artefacts: dict[str, str],
        seconds: float | None,
        timings: dict[str, Any] | None = None,
    ) -> None:
        """Commit a finished run. Call only once its artefacts are completely on disk."""
        with self.connection:
            self.connection.execute(
                "UPDATE runs SET status = 'done', error = NULL, metrics = ?, artefacts = ?, seconds = ?,"
                " timings = ?, finished_at = ? WHERE config_hash = ?",
                (_dump(metrics), _dump(artefacts), seconds, _dump(timings or {}), utc_now(), run.key),
            )

    def mark_failed(self, run: Any, error: str, timings: dict[str, Any] | None = None) -> None:
        """Record a failure with its error text; the grid goes on."""
        with self.connection:
            self.connection.execute(
                "UPDATE runs SET status = 'failed', error = ?, timings = ?, finished_at = ? WHERE config_hash = ?",
                (error, _dump(timings or {}), utc_now(), run.key),
            )

    # -- tuning and metadata -------------------------------------------------------------------

    def save_tuning(self, group: Any, choice: dict[str, Any], provenance: dict[str, Any]) -> None:
        """Record the hyper-parameters chosen for a tuning group (a `plan.TuneGroup`)."""
        with self.connection:
            self.connection.execute(
                "INSERT OR REPLACE INTO tuning (group_key, task, corpus, model, scenario, method, choice, provenance,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (group.key, group.task, group.corpus, group.model, group.scenario, group.method, _dump(choice),
                 _dump(provenance), utc_now()),
            )

    def tuning(self, group_key: str) -> dict[str, Any] | None:
        """{"choice": ..., "provenance": ...} for a tuning group, or None if not chosen yet."""
        row = self.connection.execute("SELECT * FROM tuning WHERE group_key = ?", (group_key,)).fetchone()
        if row is None:
            return None
        return {"choice": _load(row["choice"]), "provenance": _load(row["provenance"])}

    def tuning_rows(self) -> list[dict[str, Any]]:
        rows = self.connection.execute("SELECT * FROM tuning ORDER BY task, model, scenario, method").fetchall()
        return [
            {**{k: row[k] for k in ("group_key", "task", "corpus", "model", "scenario", "method", "created_at")},
             "choice": _load(row["choice"]), "provenance": _load(row["provenance"])}
            for row in rows
        ]

    def set_meta(self, key: str, value: Any) -> None:
        with self.connection:
            self.connection.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, _dump(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else _load(row[0])

