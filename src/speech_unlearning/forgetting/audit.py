"""The audit of an applied deletion request: audit.json for machines, audit.md for people.

audit.md is written for a reader who is not an ML engineer: the verdict in one line (and whether
the weights changed at all), one plain sentence per check with the number of recordings it rests
on and a 95 % interval, rounded numbers, the sha256 of the weights file as `sha256sum` prints it,
the time budget and whether it cut the run short, and what the tool does not do.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from .. import __version__
from ..data.corpus import Corpus
from ..io import atomic_write_json, atomic_write_text, sha256_file

AUDIT_SCHEMA_VERSION = 2
AUDIT_JSON = "audit.json"
AUDIT_MD = "audit.md"

NOT_DONE = (
    "It does not delete the recordings themselves: remove the audio files (and every copy of them) from "
    "your storage separately.",
    "It does not touch backups, older checkpoints or exported copies of the model: the checkpoint before "
    "this request still holds what was forgotten; retire it and its copies.",
    "It does not change the corpus or the feature cache; the forgotten recordings are only excluded from "
    "this model and from later requests applied to it.",
)
VERDICT_TEXT = {
    "pass": "PASS: the request was applied and every check passed.",
    "nothing-to-forget": "NOTHING MEASURABLE TO FORGET: the request was applied (the weights changed) and every check "
                         "passed, but the model before unlearning already met every check too, so the checks cannot "
                         "show that anything was forgotten.",
    "fail": "FAIL: the request was applied but at least one check failed; the model is not accepted.",
    "no-op": "NO-OP: the weights did not change, so nothing was unlearned; this is not a pass.",
}


def percent(value: float | None) -> str:
    """0.123 -> "12.3 %"; None -> "-"."""
    return "-" if value is None else f"{100 * value:.1f} %"


def interval_text(interval: Any) -> str:
    return "" if not interval else f" (95 % interval {100 * interval[0]:.1f} to {100 * interval[1]:.1f} %)"


def audio_conversions(path: str | Path, sample_rate: int, clip_seconds: float) -> list[str]:
    """What reading `path` changed (the documented conversions of data/audio.py): channels averaged
    to mono, another rate resampled, a longer file cut to the clip length. Reads the header only."""
    import soundfile

    info = soundfile.info(str(path))
    done = []
    if info.channels > 1:
        done.append(f"{info.channels} channels averaged to mono")
    if info.samplerate != sample_rate:
        done.append(f"resampled from {info.samplerate} Hz to {sample_rate} Hz")
    if info.duration > clip_seconds + 1e-6:
        done.append(f"{info.duration:.1f} s long, cut to {clip_seconds:g} s clip(s)")
    return done


def forgotten_item_records(corpus: Corpus, positions: Iterable[int], kind_of: Mapping[str, str]) -> list[dict[str, Any]]:
    """One record per forgotten item: id, file (relative to the corpus root), the file's sha256, label,
    speaker, request kind and the conversions reading it made. Hashes of the audio files only: never
    the audio itself."""
    files: dict[str, tuple[str, list[str]]] = {}
    records = []
    root = Path(corpus.root)
    for position in positions:
        utterance = corpus.utterances[int(position)]
        if utterance.path not in files:
            files[utterance.path] = (sha256_file(utterance.path),
                                     audio_conversions(utterance.path, corpus.sample_rate, corpus.clip_seconds))
        path = Path(utterance.path)
        relative = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        digest, conversions = files[utterance.path]
        records.append({
            "utt_id": utterance.utt_id, "file": relative, "file_sha256": digest,
            "label": corpus.label_names[utterance.label], "speaker": utterance.speaker,
            "kind": kind_of.get(utterance.utt_id, ""), "conversions": conversions,
        })  # fmt: skip
    return records


def conversion_summary(items: Iterable[Mapping[str, Any]]) -> list[str]:
    """'resampled from 8000 Hz to 16000 Hz: 400 recording(s)', one line per kind of conversion."""
    counts: dict[str, int] = {}
    for item in items:
        for text in item.get("conversions") or []:
            key = text.split(" long, ")[-1] if " long, " in text else text  # lengths differ per file
            counts[key] = counts.get(key, 0) + 1
    return [f"{text}: {n} recording(s)" for text, n in sorted(counts.items())]


def software_versions() -> dict[str, str]:
    import numpy
    import sklearn

    return {"speech_unlearning": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "scikit-learn": sklearn.__version__, "python": platform.python_version()}


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name}: {n}" for name, n in counts.items()) or "-"


def plain_sentence(check: Mapping[str, Any]) -> str:
    """One sentence a reader without ML training can follow, for one check."""
    n = check.get("n")
    value, target = percent(check["value"]), percent(check["target"])
    interval = check.get("interval")
    sized = ""
    if n:
        sized = f" ({n} recordings" + (f"; 95 % interval {100 * interval[0]:.1f} to {100 * interval[1]:.1f} %)"
                                       if interval else ")")
    name = check["name"]
    if name.startswith("loss MIA"):
        what = name.split(", ", 1)[-1]
        text = (f"An attacker trying to tell the forgotten recordings of {what} from recordings the model never saw "
                f"was right {value} of the time{sized}; {target} is as good as a coin flip.")
    elif name.startswith("Df accuracy"):
        what = name.split(", ", 1)[-1]
        text = (f"The model still recognises {value} of the forgotten recordings of {what}{sized}; the target is "
                f"{target} ({check['target_source']}), rule: {check['rule']}.")
    else:
        text = (f"{name}: {value} after unlearning against {target} before{sized}; rule: {check['rule']}.")
    already = {True: " The model before unlearning already met this check.", False: "", None: ""}
    return f"{text} Result: {check['result']}.{already[check.get('original_passed')]}"


def _seconds(value: Any) -> str:
    return "no cap" if value is None else f"{float(value):.1f} s"


def _method_lines(audit: Mapping[str, Any]) -> list[str]:
    method = audit["method"]
    budget = method.get("budget") or {}
    cut = ("the budget cut the run short (the method stopped before its schedule ended)"
           if method["budget_exhausted"] else "the run finished its schedule within the budget")
    return [
        f"- method: `{method['name']}` (chosen by: {method['choice']['source']}), {method['seconds']:.1f} s of "
        f"unlearning, {method['steps']} step(s)",
        f"- time budget: {_seconds(method['budget_seconds'])} ({budget.get('source', '-')}); {cut}",
    ]


def _checkpoint_lines(audit: Mapping[str, Any]) -> list[str]:
    before, after = audit["checkpoints"]["before"], audit["checkpoints"]["after"]
    changed = audit.get("weights_changed")
    lines = [f"- checkpoint before: `{before['path']}`; weights file sha256 (as `sha256sum` prints it): "
             f"`{before.get('weights_sha256', '-')}`"]
    if after:
        lines.append(f"- checkpoint after: `{after['path']}`; weights file sha256: `{after.get('weights_sha256', '-')}`")
    else:
        lines.append("- checkpoint after: not written")
    lines.append("- weights changed: " + {True: "yes", False: "NO (byte-identical to the checkpoint before)",
                                          None: "not compared"}[changed])
    return lines


def format_audit_markdown(audit: Mapping[str, Any]) -> str:
    """The human-readable audit: verdict, request, checkpoints, method, checks in words and as a table, notes."""
    request, verdict = audit["request"], audit["verdict"]
    counts = audit["resolution"]["counts"]
    headline = VERDICT_TEXT.get(verdict, verdict)
    if verdict == "fail":
        headline += f" ({len(audit['failed_checks'])} check(s) failed)"
    if audit.get("nothing_to_forget") and verdict != "nothing-to-forget":
        headline += " The model before unlearning already met every check: nothing measurable to forget."
    lines = [
        f"# Deletion request audit: {request['id']}",
        "",
        f"**Verdict: {headline}**",
        "",
        f"- request sha256: `{request['sha256']}`",
        f"- reason: {request['reason'] or '-'}",
        f"- asked: speakers {', '.join(request['speakers']) or '-'}; keywords {', '.join(request['keywords']) or '-'}; "
        f"{len(request['files'])} file(s) or utterance id(s)",
        f"- corpus: `{audit['corpus']['name']}` ({audit['corpus']['task']}), fingerprint `{audit['corpus']['fingerprint']}`",
        f"- forgotten now: {counts['total']} recording(s) ({_counts(counts['per_kind'])}); "
        f"already forgotten earlier: {counts['already_forgotten']}",
        f"- per class: {_counts(counts['per_class'])}",
        f"- per speaker: {_counts(counts['per_speaker'])}",
    ]
    if counts["ignored"]:
        lines.append(f"- ignored (--ignore-unknown): {'; '.join(counts['ignored'])}")
    converted = conversion_summary(audit.get("forgotten_items") or [])
    lines.append("- audio converted on reading (accepted, documented): " + ("; ".join(converted) or "none"))
    lines += _checkpoint_lines(audit) + _method_lines(audit)
    lines += [f"- wall time: {audit['wall_seconds']:.1f} s; software: "
              + ", ".join(f"{k} {v}" for k, v in audit["software"].items()), "", "## Checks in plain words", ""]
    lines += [f"- {plain_sentence(check)}" for check in audit["checks"]]
    lines += ["", "## Checks", "", "| check | category | n | value (95 % interval) | target | rule | result |",
              "|---|---|---|---|---|---|---|"]
    for check in audit["checks"]:
        note = f" ({check['note']})" if check["note"] and check["result"] in ("pass", "FAIL") else ""
        lines.append(f"| {check['name']} | {check['category']} | {check.get('n') or '-'} | {percent(check['value'])}"
                     f"{interval_text(check.get('interval'))} | {percent(check['target'])} ({check['target_source']}) | "
                     f"{check['rule']} | {check['result']}{note} |")
    lines += _metrics_table(audit)
    if audit.get("earlier_requests"):
        lines += ["", "## Earlier requests (checked again)", ""]
        lines += [f"- {e['request_id']} (sha256 `{e['request_sha256'] or '-'}`): {e['n_items']} recording(s)"
                  for e in audit["earlier_requests"]]
    lines += ["", "## Thresholds", ""] + [f"- {k} = {v}" for k, v in audit["thresholds"].items()]
    lines += ["", "## Notes", ""] + [f"- {note}" for note in audit["notes"]]
    lines += ["", "## What this tool does not do", ""] + [f"- {text}" for text in NOT_DONE]
    lines += ["", f"Forgotten recordings and the sha256 of their audio files: {AUDIT_JSON} (`forgotten_items`). "
              "The new checkpoint's history does not name them: it keeps keyed hashes (HMAC-SHA256 with a random "
              "salt of that checkpoint) and counts, enough to keep them out of later requests."]
    return "\n".join(lines) + "\n"


def _metrics_table(audit: Mapping[str, Any]) -> list[str]:
    roles = list(audit["metrics"])
    lines = ["", "## Metrics", "", "| metric | " + " | ".join(roles) + " |", "|---|" + "---|" * len(roles)]
    first = audit["metrics"][roles[0]]
    for key in [k for k in first if k not in ("groups", "sizes")]:
        cells = [audit["metrics"][role].get(key) for role in roles]
        cells = [c["accuracy"] if isinstance(c, dict) else c for c in cells]
        lines.append(f"| {key} | " + " | ".join(percent(c) for c in cells) + " |")
    return lines


def write_audit(folder: str | Path, audit: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write `folder`/audit.json and `folder`/audit.md atomically; returns both paths."""
    folder = Path(folder)
    json_path, md_path = folder / AUDIT_JSON, folder / AUDIT_MD
    atomic_write_json(json_path, audit)
    atomic_write_text(md_path, format_audit_markdown(audit))
    return json_path, md_path
