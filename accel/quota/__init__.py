"""Team quota: GPU-equivalent math, the reservation ledger model and what each pod is charged.

Owns `rules` (quota invariants, headroom), `ledger` (the O(1) reservation ledger model) and
`charges` (each pod's charge, memoised). Pure: the webhook's ledger adapter does the API writes.
May import: `accel.cluster`, `accel.policy`, `accel.capacity`.
"""
