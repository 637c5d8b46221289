"""The admission webhook's decisions for one pod: resolve -> plan -> validate.

`resolve` picks the team and hardware profile; `plan` builds the mutation (with `affinity`,
`resources` renaming, `generic` narrowing and `jobs` keeping one type per job, all as `patches`);
`validate` checks the mutated pod (labels, permissions, size, quota). `context` is the
per-generation cluster view they share; `messages` holds the texts users read.
May import: `accel.cluster`, `accel.policy`, `accel.capacity`, `accel.quota`.
"""
