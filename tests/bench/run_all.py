"""`make bench`: run every `tests/bench/bench_*.py` (each prints ratios against a baseline it
measures in the same run) and summarise which targets held.

Each benchmark runs in its own interpreter, so one benchmark's heap (5,000-node indexes, a frozen
GC generation, worker pools) cannot slow the next one down.

Usage: python -m tests.bench.run_all [name ...]   (names without the bench_ prefix)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    wanted = set(argv if argv is not None else sys.argv[1:])
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    results: list[tuple[str, str, float]] = []
    for name in names:
        if wanted and name.removeprefix("bench_") not in wanted:
            continue
        print(f"\n===== {name} =====", flush=True)
        started = time.perf_counter()
        script = f"import sys, tests.bench.{name} as bench; sys.exit(bench.main())"
        code = subprocess.run([sys.executable, "-c", script], cwd=HERE.parents[1], check=False).returncode
        verdict = (
            "targets met"
            if code == 0
            else ("ERROR" if code not in (0, 1) else f"TARGET MISSED (exit {code})")
        )
        results.append((name, verdict, time.perf_counter() - started))
    print("\n===== summary =====")
    for name, verdict, seconds in results:
        print(f"{name:<28} {verdict:<28} {seconds:7.1f}s")
    return 0 if all(v == "targets met" for _, v, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
