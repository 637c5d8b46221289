"""Hardware profiles as users see them: availability, units on nodes, summaries, discovery.

Owns `availability` (per profile: what exists, what is free, what it costs), `units` (counting
profile units on nodes), `summary` (the public models), `table` (the `accel profiles` table) and
`discovery` (drafting a profile from a selection of nodes).
May import: `accel.cluster`, `accel.policy`, `accel.capacity`.
"""
