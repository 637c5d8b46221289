"""A thin, typed wrapper over the `kubectl` binary for the end-to-end tests, plus `wait_until`.

Why kubectl and not kubernetes_asyncio: the e2e tests should exercise the cluster exactly as a
user does (admission errors as kubectl prints them, server-side dry runs), and they must not
share code paths with the `kube/` package under test.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
Obj = dict[str, Any]


class KubectlError(RuntimeError):
    """kubectl exited non-zero; `stderr` holds what the API server said."""

    def __init__(self, args: Sequence[str], code: int, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} failed ({code}): {stderr.strip()}")
        self.code = code
        self.stderr = stderr


@dataclass(frozen=True)
class Kubectl:
    """Runs kubectl against one kubeconfig/context; every call has a timeout."""

    kubeconfig: str | None = None
    context: str | None = None
    timeout_s: float = 60.0
    binary: str = "kubectl"

    def run(self, *args: str, stdin: str | None = None, timeout_s: float | None = None) -> str:
        cmd = [self.binary, *self._global_flags(), *args]
        done = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, check=False, timeout=timeout_s or self.timeout_s
        )
        if done.returncode != 0:
            raise KubectlError(args, done.returncode, done.stderr)
        return done.stdout

    def _global_flags(self) -> list[str]:
        flags = []
        if self.kubeconfig:
            flags += ["--kubeconfig", self.kubeconfig]
        if self.context:
            flags += ["--context", self.context]
        return flags

    def get(self, kind: str, name: str | None = None, *, namespace: str | None = None) -> Obj:
        args = (
            ["get", kind]
            + ([name] if name else [])
            + (["-n", namespace] if namespace else [])
            + ["-o", "json"]
        )
        result: Obj = json.loads(self.run(*args))
        return result

    def apply(self, manifest: Obj | str, *, server_side: bool = False) -> None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        self.run(
            "apply", *(["--server-side", "--force-conflicts"] if server_side else []), "-f", "-", stdin=text
        )

    def create(self, manifest: Obj, *, dry_run: bool = False) -> Obj:
        """Create an object; with `dry_run` the server runs admission but persists nothing."""
        args = ["create", "-f", "-", "-o", "json"] + (["--dry-run=server"] if dry_run else [])
        result: Obj = json.loads(self.run(*args, stdin=json.dumps(manifest)))
        return result

    def delete(self, kind: str, name: str, *, namespace: str | None = None, wait: bool = False) -> None:
        ns = ["-n", namespace] if namespace else []
        self.run("delete", kind, name, *ns, "--ignore-not-found", f"--wait={str(wait).lower()}")

    def patch_status(self, kind: str, name: str, ops: list[Obj]) -> None:
        """JSON-patch the status subresource (how extended resources are advertised by hand)."""
        self.run("patch", kind, name, "--subresource=status", "--type=json", "-p", json.dumps(ops))


def wait_until(check: Callable[[], T | None], *, timeout_s: float, what: str, interval_s: float = 0.5) -> T:
    """Poll `check` until it returns a truthy value, against a deadline (real processes only).

    Exceptions from `check` count as "not yet" until the deadline; the last one is reported.
    """
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (KubectlError, KeyError, IndexError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout_s}s waiting for {what}" + (f": {last_error}" if last_error else "")
            )
        time.sleep(interval_s)
