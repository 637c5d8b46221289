"""Stopping a process a test started, also when the test failed (the project rule: by its PID)."""

from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen[str], *, grace_s: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace_s`; always reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()
