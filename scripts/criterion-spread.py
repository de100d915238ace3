#!/usr/bin/env python3
"""Per-iteration time spread of criterion's last run of some benchmarks: minimum, 10th percentile and median.

On a shared virtual machine a neighbour's load stretches some of criterion's samples by 20-50 %, which moves
its mean and even its median from run to run; the fastest samples move far less, because a sample is never
faster than the code. docs/benchmarks.md quotes these alongside criterion's own interval when the box is noisy.
Criterion keeps each sample's total time and iteration count in `<criterion dir>/<group>/<bench>/new/sample.json`.

    python3 scripts/criterion-spread.py <criterion dir> [name filter]

`<criterion dir>` is `target/criterion` after `cargo bench`, or `./target/criterion` under the working directory
a bench binary was started from. Prints one line per benchmark whose path contains the filter.
"""
import json
import statistics
import sys
from pathlib import Path


def spread(sample_file: Path) -> tuple[float, float, float]:
    sample = json.loads(sample_file.read_text())
    per_iteration = sorted(t / n for t, n in zip(sample["times"], sample["iters"]) if n > 0)
    if not per_iteration:
        raise SystemExit(f"{sample_file}: no samples")
    return per_iteration[0], per_iteration[len(per_iteration) // 10], statistics.median(per_iteration)


def readable(ns: float) -> str:
    return f"{ns / 1000:.1f} µs" if ns >= 1000 else f"{ns:.0f} ns"


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip().splitlines()[-4], file=sys.stderr)
        return 2
    root, wanted = Path(sys.argv[1]), (sys.argv[2] if len(sys.argv) == 3 else "")
    found = sorted(p for p in root.glob("**/new/sample.json") if wanted in str(p.relative_to(root)))
    if not found:
        print(f"no criterion samples under {root} matching {wanted!r}", file=sys.stderr)
        return 1
    for sample_file in found:
        low, p10, median = spread(sample_file)
        name = sample_file.parent.parent.relative_to(root)
        print(f"{name}: min {readable(low)}, p10 {readable(p10)}, median {readable(median)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
