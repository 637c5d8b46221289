"""Keyed redaction of node identities in every API answer (settings.api.redactNodeNames).

Rules:
1. A node name becomes `node:<16 hex>`, and each topology value (zone, spine, leaf) becomes
   `<level>:<10 hex>` (a colon is never in a node name or label value, so an id can never be
   mistaken for, or contain, a real one): HMAC-SHA256 under a secret key, so a dictionary of likely names
cannot be
   hashed and compared (an unkeyed hash could), yet one key gives stable ids (a selection made on
   the page survives a reload, nodes in one zone still group together).
2. The key comes from `settings.api.redactionKeyFile` (mount it from a Secret; at least 16 bytes).
   Without one, or when that file cannot be read, a random key is drawn once per process and a
   log line says so: redacted ids then change on every restart and differ between replicas.
3. What is redacted, everywhere (nodes, drafts, errors): node names, topology values, all labels
   (dropped), and a draft's nodeSelector and sharedLabels (dropped: they are the nodes' labels). Lookups by
   anything but a redacted id are refused (api/handlers.py), so the API never confirms a guess.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

MIN_KEY_BYTES = 16
TOPOLOGY_FIELDS: tuple[str, ...] = ("zone", "spine", "leaf")


class Redactor:
    """HMAC-SHA256 redaction under one key (rule 1)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a redaction key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def _mac(self, kind: str, value: str) -> str:
        return hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()

    def node(self, name: str) -> str:
        return "node:" + self._mac("node", name)[:16]

    def value(self, level: str, value: str | None) -> str | None:
        """A topology value (`zone`, `spine`, `leaf`) as `<level>:<hex>`; None stays None."""
        return None if value is None else f"{level}:" + self._mac(level, value)[:10]

    def text(self, text: str, names: Iterable[str]) -> str:
        """Every node name in free text replaced in one pass (longest first, so `gpu-1` never eats
        `gpu-10`, and no replacement is searched again)."""
        ordered = sorted({n for n in names if n}, key=len, reverse=True)
        if not ordered:
            return text
        pattern = re.compile("|".join(re.escape(n) for n in ordered))
        return pattern.sub(lambda m: self.node(m.group(0)), text)


class RedactionKeys:
    """The Redactor for the configured key file, loaded once per path (rule 2)."""

    def __init__(self) -> None:
        self._by_path: dict[str | None, Redactor] = {}
        self._random: Redactor | None = None

    def redactor(self, key_file: str | None) -> Redactor:
        found = self._by_path.get(key_file)
        if found is None:
            found = self._by_path[key_file] = self._load(key_file)
        return found

    def _load(self, key_file: str | None) -> Redactor:
        if key_file is not None:
            try:
                return Redactor(Path(key_file).read_bytes().strip())
            except (OSError, ValueError) as exc:
                log.error(
                    "cannot use api.redactionKeyFile %s (%s); redacting with a random per-process key "
                    "instead",
                    key_file,
                    exc,
                )
        if self._random is None:
            log.warning(
                "node names are redacted with a random per-process key (no usable api.redactionKeyFile): "
                "redacted node ids will change on restart and differ between replicas"
            )
            self._random = Redactor(secrets.token_bytes(32))
        return self._random
