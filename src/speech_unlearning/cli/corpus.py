"""`speech-unlearn corpus`: build, verify and inspect corpora.

    speech-unlearn corpus build  [--cache-dir DIR] [--force] [--seed N] [--set KEY=VALUE ...]
    speech-unlearn corpus verify [--cache-dir DIR | --root DIR] [--quick]
    speech-unlearn corpus info   --corpus SPEC --task kws|sid [--cache-dir DIR]
    speech-unlearn corpus speakers --corpus SPEC --task kws|sid [--split train]

`build` counts the audio files it wrote; `info` counts utterances, which can be more: a long
file (background noise) is cut into several `_silence_` clips.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..config import describe_fields, from_mapping, parse_overrides
from ..data.corpus import SPLITS, Corpus, default_cache_dir
from ..data.embedded import (
    EmbeddedConfig,
    build_embedded_corpus,
    embedded_corpus_is_current,
    embedded_root,
    read_manifest,
    verify_embedded_corpus,
)
from ..data.loaders import load_corpus


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "corpus",
        help="build, verify or inspect corpora (the embedded synthetic one, or a local copy)",
        description="Build and check the embedded synthetic corpus, or count any corpus per split and class.",
    )
    actions = parser.add_subparsers(dest="corpus_action", metavar="ACTION")
    _register_build(actions)
    _register_verify(actions)
    _register_info(actions)
    _register_speakers(actions)
    parser.set_defaults(handler=lambda args: _print_help(parser))


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _cache_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir", type=Path, default=None,
        help="cache folder (default: $SPEECH_UNLEARNING_CACHE or ~/.cache/speech_unlearning)",
    )  # fmt: skip


def _register_build(actions) -> None:
    fields = ", ".join(name for name, *_ in describe_fields(EmbeddedConfig))
    parser = actions.add_parser(
        "build",
        help="build the embedded synthetic corpus (espeak-ng) unless a valid one is cached",
        description=f"Build the embedded corpus. Config keys for --set: {fields}.",
    )
    _cache_dir_option(parser)
    parser.add_argument("--force", action="store_true", help="rebuild even if a valid corpus is cached")
    parser.add_argument("--seed", type=int, default=None, help="seed of the corpus (default 0)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override an EmbeddedConfig field (repeatable), e.g. --set kws_speakers=100",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="worker processes (the files do not depend on it)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run_build)


def _register_verify(actions) -> None:
    parser = actions.add_parser(
        "verify",
        help="check the embedded corpus against its manifest (sha256 of every file)",
        description="Exit 0 when every file matches the manifest, 1 listing each problem otherwise.",
    )
    _cache_dir_option(parser)
    parser.add_argument("--root", type=Path, default=None, help="corpus folder (default: the one in the cache)")
    parser.add_argument("--quick", action="store_true", help="check presence and sizes only, not sha256")
    parser.set_defaults(handler=run_verify)


def _register_info(actions) -> None:
    parser = actions.add_parser(
        "info",
        help="count the utterances of any corpus per split and class",
        description="Load a corpus (building the embedded one if needed) and print its counts.",
    )
    parser.add_argument(
        "--corpus", default="embedded",
        help="corpus spec: embedded, fsdd[:PATH], speech-commands:PATH, voxceleb1:PATH (default: embedded)",
    )  # fmt: skip
    parser.add_argument(
        "--task", required=True, choices=("kws", "sid"), help="kws (keyword spotting) or sid (speaker ID)"
    )
    _cache_dir_option(parser)
    parser.set_defaults(handler=run_info)


def _register_speakers(actions) -> None:
    parser = actions.add_parser(
        "speakers",
        help="list the speakers of a corpus, one a line, with their utterances per split",
        description="List the speaker ids a deletion request can name (`forget --speaker ID`).",
    )
    parser.add_argument("--corpus", default="embedded", help="corpus spec (default: embedded)")
    parser.add_argument("--task", required=True, choices=("kws", "sid"), help="kws or sid")
    parser.add_argument("--split", choices=SPLITS, help="only speakers with utterances in this split")
    _cache_dir_option(parser)
    parser.set_defaults(handler=run_speakers)


def _embedded_config(args: argparse.Namespace) -> EmbeddedConfig:
    values = parse_overrides(args.overrides)
    if args.seed is not None:
        values["seed"] = str(args.seed)
    return from_mapping(EmbeddedConfig, values, where="embedded corpus")


def run_build(args: argparse.Namespace) -> int:
    config = _embedded_config(args)
    cache_dir = args.cache_dir or default_cache_dir()
    root = embedded_root(cache_dir)
    reused = not args.force and embedded_corpus_is_current(root, config)
    started = time.perf_counter()
    build_embedded_corpus(cache_dir, config, force=args.force, progress=not args.no_progress, workers=args.workers)
    seconds = time.perf_counter() - started
    counts = read_manifest(root)["counts"]
    print(f"embedded corpus: {root}")
    print(f"{'reused the valid cached corpus' if reused else 'built'} in {seconds:.1f} s (seed {config.seed})")
    kws = counts["kws"]
    print(f"kws: {sum(kws[s] for s in SPLITS)} clips: " + ", ".join(f"{s} {kws[s]}" for s in SPLITS))
    print("  (audio files; `corpus info` counts utterances, more: each background-noise file is cut into several "
          "_silence_ clips)")
    sid = counts["sid"]
    print(f"sid: {sid['speakers']} speakers, {sid['train'] + sid['dev'] + sid['test']} utterances: "
          f"train {sid['train']}, dev {sid['dev']}, test {sid['test']}")  # fmt: skip
    return 0


def run_verify(args: argparse.Namespace) -> int:
    root = args.root or embedded_root(args.cache_dir or default_cache_dir())
    problems = verify_embedded_corpus(root, full=not args.quick)
    if problems:
        print(f"embedded corpus {root}: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print("rebuild it with: speech-unlearn corpus build --force", file=sys.stderr)
        return 1
    count = len(read_manifest(root)["files"])
    print(f"embedded corpus {root}: {count} files match the manifest ({'sizes' if args.quick else 'sha256'})")
    return 0


def count_table(corpus: Corpus) -> list[str]:
    """Lines of a class x split table of utterance counts, with totals."""
    counts = {(u.label, u.split): 0 for u in corpus.utterances}
    for utterance in corpus.utterances:
        counts[(utterance.label, utterance.split)] += 1
    width = max(len("class"), *(len(name) for name in corpus.label_names))
    lines = [f"{'class':<{width}}  " + "  ".join(f"{s:>10}" for s in SPLITS) + f"  {'total':>7}"]
    for label, name in enumerate(corpus.label_names):
        row = [counts.get((label, split), 0) for split in SPLITS]
        lines.append(f"{name:<{width}}  " + "  ".join(f"{n:>10}" for n in row) + f"  {sum(row):>7}")
    totals = [int(len(corpus.indices(split))) for split in SPLITS]
    lines.append(f"{'total':<{width}}  " + "  ".join(f"{n:>10}" for n in totals) + f"  {sum(totals):>7}")
    return lines


def run_info(args: argparse.Namespace) -> int:
    corpus = load_corpus(args.corpus, args.task, cache_dir=args.cache_dir)
    speakers = {split: len({u.speaker for u in corpus.utterances if u.split == split}) for split in SPLITS}
    print(f"corpus: {corpus.name} ({corpus.task}), root {corpus.root}")
    print(f"fingerprint: {corpus.fingerprint}")
    files = len({u.path for u in corpus.utterances})
    print(
        f"{len(corpus)} utterances from {files} audio files, {corpus.num_classes} classes, "
        f"clips of {corpus.clip_seconds:g} s at {corpus.sample_rate} Hz"
    )
    if files != len(corpus):
        print(f"note: {len(corpus) - files} more utterances than files: some files (background noise) are cut into "
              "several clips; `corpus build` counts files")
    print("speakers per split: " + ", ".join(f"{s} {n}" for s, n in speakers.items()))
    for note in corpus.info.get("notes", []):
        print(f"note: {note}")
    for line in count_table(corpus):
        print(line)
    return 0



def speaker_counts(corpus: Corpus) -> dict[str, dict[str, int]]:
    """speaker -> split -> utterances."""
    counts: dict[str, dict[str, int]] = {}
    for utterance in corpus.utterances:
        row = counts.setdefault(str(utterance.speaker), dict.fromkeys(SPLITS, 0))
        row[utterance.split] += 1
    return dict(sorted(counts.items()))


def run_speakers(args: argparse.Namespace) -> int:
    corpus = load_corpus(args.corpus, args.task, cache_dir=args.cache_dir)
    rows = speaker_counts(corpus)
    if args.split:
        rows = {speaker: row for speaker, row in rows.items() if row[args.split]}
    width = max([len("speaker"), *(len(name) for name in rows)])
    print(f"{'speaker':<{width}}  " + "  ".join(f"{s:>10}" for s in SPLITS))
    for speaker, row in rows.items():
        print(f"{speaker:<{width}}  " + "  ".join(f"{row[s]:>10}" for s in SPLITS))
    print(f"{len(rows)} speaker(s) of {corpus.name}", file=sys.stderr)
    return 0
