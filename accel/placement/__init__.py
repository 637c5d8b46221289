"""The scheduler extender's decisions: filter, prioritize, preempt and bind over one snapshot.

`core.ExtenderCore` is the engine; `state` and `index` keep the per-generation caches;
`filter_rules`, `score_rules`, `topology_rules` and `fragmentation` are the rules; `filter`,
`filter_columns`, `prioritize`, `topology`, `preempt` and `bind` apply them per node class;
`shapes` and `workload_mix` feed the fragmentation score (shared with `accel.sim`).
May import: `accel.cluster`, `accel.policy`, `accel.capacity`.
"""
