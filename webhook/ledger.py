"""The quota ledger's compare-and-swap loop over the `CasStore` Protocol.

One attempt = read `accel-quota-ledger` (data + resourceVersion), decide in the pure core, and if
the decision changes the ledger write it back with the version just read. A conflict means another
replica wrote in between: re-read and decide again with its reservation included. So two replicas
can never both take the last free GPU (accel/quota.py invariant 4).

Bounded: after `attempts` conflicts in a row the admission is denied with a retry message
(controllers retry on their own); a store error (API server unreachable) denies too, with the
cause. Between attempts a short, growing, jittered pause spreads the contenders apart.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from accel import admission_messages as msg
from accel.admission_messages import Finding
from accel.quota import LEDGER_NAME, Ledger, ReservationOutcome
from kube.errors import KubeError
from kube.protocol import CasStore

log = logging.getLogger(__name__)

DEFAULT_ATTEMPTS = 16
BASE_BACKOFF_S = 0.001
MAX_BACKOFF_S = 0.05

Decide = Callable[[Ledger], ReservationOutcome]


class LedgerClient:
    """CAS access to the ledger for one webhook replica; `last` is the last ledger it saw."""

    def __init__(
        self,
        store: CasStore,
        *,
        name: str = LEDGER_NAME,
        attempts: int = DEFAULT_ATTEMPTS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.store = store
        self.name = name
        self.attempts = attempts
        self.last = Ledger()
        self.conflicts = 0
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def read(self) -> Ledger:
        """The current ledger (also remembered as `last`)."""
        data, _version = await self.store.read(self.name)
        self.last = Ledger.from_data(data)
        return self.last

    async def run(self, decide: Decide) -> ReservationOutcome | Finding:
        """Decide against the current ledger and persist the result with CAS (see module docstring)."""
        try:
            for attempt in range(self.attempts):
                data, version = await self.store.read(self.name)
                ledger = Ledger.from_data(data)
                self.last = ledger
                outcome = decide(ledger)
                if outcome.ledger is None:
                    return outcome
                if await self.store.write(self.name, outcome.ledger.to_data(), version) is not None:
                    self.last = outcome.ledger
                    return outcome
                self.conflicts += 1
                pause = min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2**attempt)
                await self._sleep(self._rng.uniform(0, pause))
        except KubeError as exc:
            log.warning("quota ledger unavailable", extra={"error": str(exc), "ledger": self.name})
            return msg.ledger_unavailable(type(exc).__name__ + (f": {exc}" if str(exc) else ""))
        return msg.ledger_busy(self.attempts)
