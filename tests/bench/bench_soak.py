"""`make bench` soak: 60 s of the mixed load in tests/bench/soak.py (ratios: RSS end/warm-up, p99
last/first)."""

from __future__ import annotations

from tests.bench import soak


def main() -> int:
    return soak.run(60.0, concurrency=8)


if __name__ == "__main__":
    raise SystemExit(main())
