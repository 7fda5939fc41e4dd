"""Feature cache benchmark: cold build (decode + featurise) vs warm load (memmap + one full read).

    .venv/bin/python benchmarks/bench_features.py [--fsdd PATH] [--kind logmel|waveform]

Runs on FSDD (3,000 recordings) in a fresh temporary cache, prints a table and exits with
status 1 when the warm load is less than --min-speedup times faster than the cold build.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from speech_unlearning.data.loaders import load_corpus
from speech_unlearning.data.features import feature_spec_for, load_features

DEFAULT_FSDD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", type=Path, default=DEFAULT_FSDD, help="FSDD root (holds recordings/)")
    parser.add_argument("--kind", choices=("logmel", "waveform"), default="logmel", help="feature kind to cache")
    parser.add_argument("--warm-repeats", type=int, default=5, help="warm loads to time; the median is reported")
    parser.add_argument("--min-speedup", type=float, default=50.0, help="fail when warm is not this many times faster")
    return parser.parse_args(argv)


def timed(action) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-features-") as cache:
        corpus = load_corpus(f"fsdd:{args.fsdd}", "kws", cache_dir=cache)
        spec = feature_spec_for(corpus, args.kind)
        cold_seconds, features = timed(lambda: load_features(corpus, spec, cache_dir=cache, progress=False))
        # Warm: map the cache and read every row once, so the work is not deferred by the memmap.
        warm_runs = [
            timed(lambda: float(np.asarray(load_features(corpus, spec, cache_dir=cache, progress=False)).sum()))[0]
            for _ in range(args.warm_repeats)
        ]
    warm_seconds = statistics.median(warm_runs)
    speedup = cold_seconds / warm_seconds
    megabytes = features.nbytes / 2**20
    print(f"FSDD {len(corpus)} clips, {args.kind} {spec.shape}, {megabytes:.1f} MiB")
    print(f"{'load':<6} {'seconds':>9} {'clips/s':>10}")
    print(f"{'cold':<6} {cold_seconds:>9.3f} {len(corpus) / cold_seconds:>10.0f}")
    print(f"{'warm':<6} {warm_seconds:>9.4f} {len(corpus) / warm_seconds:>10.0f}")
    fast_enough = speedup >= args.min_speedup
    print(f"speed-up {speedup:.0f}x (target >= {args.min_speedup:.0f}x): {'ok' if fast_enough else 'TOO SLOW'}")
    return 0 if fast_enough else 1


if __name__ == "__main__":
    sys.exit(main())
