"""How often `forget`'s verdict is right: verdicts over many requests, for the default method,
the Retrain and the unchanged Original.

    .venv/bin/python benchmarks/verdict_rates.py run CHECKPOINT OUT [--per-kind 10] [--files 20] [--worker 0/2]
    .venv/bin/python benchmarks/verdict_rates.py summary OUT [--threshold key=value ...] [--failures]

`run` draws, from the checkpoint's training set, `--per-kind` requests of each kind (a speaker
with at least `min_check_items` training recordings, a keyword of a keyword model, a list of
`--files` random training recordings), in turn by kind, and for each one trains or applies:

- **the default**: the request applied as `forget` applies it by default (`--method auto`, the
  10 % budget, or `--budget-seconds`);
- **the Retrain**: the checkpoint's recipe on the retain set, from the Original's starting point,
  with a seed other than the Original's; the gold standard, which the checks should accept.

Both models are saved under OUT/models, one JSON line per request goes to
OUT/requests-<worker>.jsonl, and a stopped run resumes where it was. `--worker i/n` runs every
n-th request, so two processes of one thread each share two cores. `--reuse-retrains OLD_OUT`
loads the Retrains an earlier run of the same draw saved (to measure another default).

`summary` verifies every saved model with forget's acceptance checks (no
`--verify-retrain`; the defaults, or `--threshold` overrides) and prints, per request kind, how
often the Retrain and the default are accepted (`pass` or `nothing-to-forget`), how often the
default is a no-op, and how often the unchanged Original already meets every check (then no
verdict can be a pass: the checks cannot tell at that size).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from speech_unlearning.config import from_mapping, parse_overrides, to_dict
from speech_unlearning.forgetting.acceptance import ACCEPTED, AcceptanceThresholds
from speech_unlearning.forgetting.apply import MethodSpec, load_subject, unlearn_subject
from speech_unlearning.forgetting.choice import choose_method
from speech_unlearning.forgetting.deletion import retrain_reference
from speech_unlearning.forgetting.history import default_budget, original_seed
from speech_unlearning.forgetting.request import DeletionRequest, resolve_request
from speech_unlearning.forgetting.verify import verify_request
from speech_unlearning.methods.retrain import retrain_seed

KINDS = ("speaker", "keyword", "files")


def draw_requests(corpus, per_kind: int, files: int, min_items: int, seed: int) -> list[dict]:
    """`per_kind` requests of each kind the corpus allows, drawn once from `seed`."""
    rng = random.Random(seed)
    train = corpus.indices("train")
    per_speaker = Counter(corpus.utterances[p].speaker for p in train)
    speakers = sorted(s for s, n in per_speaker.items() if n >= min_items)
    requests = [{"kind": "speaker", "items": [s]} for s in rng.sample(speakers, min(per_kind, len(speakers)))]
    if corpus.task == "kws":
        keywords = [name for name in corpus.label_names if not name.startswith("_")]
        requests += [{"kind": "keyword", "items": [k]} for k in rng.sample(keywords, min(per_kind, len(keywords)))]
    ids = [corpus.utterances[p].utt_id for p in train]
    requests += [{"kind": "files", "items": sorted(rng.sample(ids, files))} for _ in range(per_kind)]
    by_kind = defaultdict(list)
    for request in requests:
        by_kind[request["kind"]].append(request)
    # round robin over the kinds, so a partial run (or one worker of several) covers each kind
    ordered = [group[i] for i in range(per_kind) for group in by_kind.values() if i < len(group)]
    for number, request in enumerate(ordered):
        request["id"] = f"{request['kind']}-{number:03d}"
    return ordered


def as_deletion_request(request: dict) -> DeletionRequest:
    field = {"speaker": "speakers", "keyword": "keywords", "files": "files"}[request["kind"]]
    return DeletionRequest(**{field: tuple(request["items"])}, request_id=request["id"])


def check_rows(verification) -> list[dict]:
    return [{key: check.to_dict()[key] for key in ("name", "category", "value", "target", "n", "passed",
                                                   "original_passed")} for check in verification.checks]


def verify(subject, resolution, retain, after, thresholds, changed=True):
    return verify_request({"before": subject.model, "after": after}, subject.features, subject.corpus,
                          resolution.splits(subject.corpus), subject.earlier, retain, thresholds,
                          weights_changed=changed)  # fmt: skip


def model_with(subject, state_path: Path):
    """A copy of the checkpoint's model holding the weights saved at `state_path`."""
    model = copy.deepcopy(subject.model)
    model.load_state_dict(load_file(str(state_path)))
    return model.eval()


def run(args) -> int:
    torch.set_num_threads(args.threads)
    subject = load_subject(Path(args.checkpoint), None, args.cache_dir)
    requests = draw_requests(subject.corpus, args.per_kind, args.files, AcceptanceThresholds().min_check_items,
                             args.seed)
    index, count = args.worker
    out = Path(args.out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps({"checkpoint": str(Path(args.checkpoint).resolve()),
                                              "per_kind": args.per_kind, "files": args.files, "seed": args.seed,
                                              "budget_seconds": args.budget_seconds, "threads": args.threads,
                                              "requests": requests}, indent=1))  # fmt: skip
    log = out / f"requests-{index}.jsonl"
    done = {json.loads(line)["id"] for line in log.read_text().splitlines()} if log.exists() else set()
    seed_of_original = original_seed(subject.metadata)
    reused = Path(args.reuse_retrains) / "models" if args.reuse_retrains else None
    for number, request in enumerate(requests):
        if number % count != index or request["id"] in done:
            continue
        started = time.perf_counter()
        resolution = resolve_request(subject.corpus, as_deletion_request(request))
        choice = choose_method("auto", subject.corpus.task, resolution.kinds)
        method = MethodSpec.parse(choice.method, choice.overrides({}))
        forget = resolution.forget_positions(subject.corpus)
        budget = default_budget(subject.metadata, args.budget_seconds)
        applied = unlearn_subject(subject, forget, method, budget, seed=0)
        method_seconds = time.perf_counter() - started
        if reused is not None and (reused / f"{request['id']}-retrain.safetensors").is_file():
            # the same request's Retrain from an earlier run
            retrained = model_with(subject, reused / f"{request['id']}-retrain.safetensors")
        else:
            retrained = retrain_reference(subject, forget, retrain_seed(seed_of_original, number))
        retrain_seconds = time.perf_counter() - started - method_seconds
        for role, model in (("default", applied.result.model), ("retrain", retrained)):
            save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()},
                      str(out / "models" / f"{request['id']}-{role}.safetensors"))
        # Verification happens once, in `summary`, from the saved models (under any thresholds).
        row = {**request, "n": int(len(forget)), "method": choice.method, "weights_changed": applied.weights_changed,
               "method_seconds": round(method_seconds, 1), "retrain_seconds": round(retrain_seconds, 1)}
        with log.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(f"{request['id']} n={row['n']} {choice.method}: weights changed {applied.weights_changed} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    return 0


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(out.glob("requests-*.jsonl")) for line in path.read_text().splitlines()]


def request_group(verification) -> dict:
    """The metrics of this request's group ("before" and "after")."""
    def pick(role):
        groups = verification.metrics[role]["groups"]
        return next(value for key, value in groups.items() if key.startswith("this request"))

    return {role: pick(role) for role in ("before", "after")}


def reverify(out: Path, thresholds: AcceptanceThresholds, cache_dir) -> list[dict]:
    """Every finished request verified again from its saved models, with this code and `thresholds`."""
    from speech_unlearning.forgetting.apply import retain_positions

    meta = json.loads((out / "run.json").read_text())
    subject = load_subject(Path(meta["checkpoint"]), None, cache_dir)
    measured = []
    for row in sorted(rows_of(out), key=lambda r: r["id"]):
        resolution = resolve_request(subject.corpus, as_deletion_request(row))
        retain = retain_positions(subject.corpus, resolution.forget_positions(subject.corpus), subject.earlier)
        verifications = {}
        for role in ("default", "retrain"):
            model = model_with(subject, out / "models" / f"{row['id']}-{role}.safetensors")
            changed = row["weights_changed"] if role == "default" else True
            verifications[role] = verify(subject, resolution, retain, model, thresholds, changed)
        before = request_group(verifications["retrain"])["before"]
        retrained = request_group(verifications["retrain"])["after"]
        measured.append({
            **row, "verdict": {role: v.verdict for role, v in verifications.items()},
            "original_meets_every_check": verifications["default"].nothing_to_forget,
            "df_gap_pp": 100 * (before["df_accuracy"] - retrained["df_accuracy"]),
            "checks": {role: check_rows(v) for role, v in verifications.items()},
        })  # fmt: skip
    return measured


def rate(flags) -> str:
    flags = list(flags)
    return f"{sum(flags)}/{len(flags)}"


def summary(args) -> int:
    out = Path(args.out)
    thresholds = from_mapping(AcceptanceThresholds, parse_overrides(args.threshold, "--threshold"), where="--threshold")
    rows = reverify(out, thresholds, args.cache_dir)
    print(f"{len(rows)} request(s) from {out}; thresholds: {to_dict(thresholds)}")
    print("| Request kind | Requests | Recordings (median) | Retrain accepted (pass + nothing to forget) | Default accepted "
          "(pass + nothing to forget) | Default accepted where Retrain is | Default no-op | Unchanged Original meets "
          "every check | Df accuracy, Original - Retrain (pp, mean) | Method chosen |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind in KINDS:
        group = [row for row in rows if row["kind"] == kind]
        if not group:
            continue
        verdicts = {role: [row["verdict"][role] for row in group] for role in ("default", "retrain")}
        split_text = {role: f"{rate(v in ACCEPTED for v in verdicts[role])} ({verdicts[role].count('pass')} + "
                            f"{verdicts[role].count('nothing-to-forget')})" for role in verdicts}
        where = [d in ACCEPTED for d, r in zip(verdicts["default"], verdicts["retrain"]) if r in ACCEPTED]
        methods = Counter(row["method"] for row in group)
        print(f"| {kind} | {len(group)} | {int(np.median([row['n'] for row in group]))} | {split_text['retrain']} "
              f"| {split_text['default']} | {rate(where)} | {rate(v == 'no-op' for v in verdicts['default'])} "
              f"| {rate(row['original_meets_every_check'] for row in group)} "
              f"| {np.mean([row['df_gap_pp'] for row in group]):.1f} "
              f"| {', '.join(f'{m} ({n})' for m, n in methods.items())} |")
    if args.failures:
        for row in rows:
            for role in ("default", "retrain"):
                for check in (c for c in row["checks"][role] if c["passed"] is False):
                    print(f"{row['id']} {role}: {check['name']}: {check['value']:.3f}, target {check['target']:.3f}, "
                          f"n = {check['n']}")
    return 0


def worker_share(text: str) -> tuple[int, int]:
    """"i/n" -> (i, n), with 0 <= i < n; argparse reports anything else as a bad --worker."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected i/n, e.g. 0/2") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"{text!r}: needs 0 <= i < n")
    return index, count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("run", help="draw the requests and measure them")
    start.add_argument("checkpoint", help="a checkpoint folder made by `speech-unlearn train`")
    start.add_argument("out", help="folder for the results (resumable)")
    start.add_argument("--per-kind", type=int, default=10, help="requests of each kind (default 10)")
    start.add_argument("--files", type=int, default=20, help="recordings in a file-list request (default 20)")
    start.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    start.add_argument("--worker", default=(0, 1), type=worker_share,
                       help="i/n: run every n-th request, from the i-th (default 0/1)")
    start.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    start.add_argument("--budget-seconds", type=float, default=None,
                       help="unlearning budget (default: forget's, 10 %% of the recorded training time; pass 10 %% "
                            "of an idle-core training time when the checkpoint was trained on busy cores)")
    start.add_argument("--reuse-retrains", default=None, metavar="OLD_OUT",
                       help="load each request's Retrain from an earlier run of the same draw instead of training it "
                            "(to measure another default method or choice table)")
    start.add_argument("--cache-dir", default=None)
    report = commands.add_parser("summary", help="the pass rates of a finished (or partial) run")
    report.add_argument("out")
    report.add_argument("--threshold", action="append", default=[],
                        help="key=value: verify under other thresholds than forget's defaults (repeatable)")
    report.add_argument("--failures", action="store_true", help="list every failed check")
    report.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    return run(args) if args.command == "run" else summary(args)


if __name__ == "__main__":
    raise SystemExit(main())
