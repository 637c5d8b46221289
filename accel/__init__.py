"""accel: type-aware GPU admission and scheduling for Kubernetes (pure core)."""
