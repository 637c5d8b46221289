"""accel: type-aware GPU admission and scheduling for Kubernetes (the pure core).

One subpackage per question, layered bottom to top: `cluster` (what the hardware is), `policy`
(what the platform team wrote), `capacity` (what is used and free), `quota` (may a team have
more), then `admission`, `placement` and `profiles` side by side, `estimates`, `sim`. The map and
the path of one pod are in docs/architecture.md; the contracts in pyproject.toml.
"""
