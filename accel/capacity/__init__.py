"""What each node has, uses and has free: the inventory, the per-device model and the node view.

Owns `inventory` (per node and per team usage from plain Node and Pod dicts), `devices` (pools of
devices, the device-assignment annotation, assumed binds) and `nodeview` (one row per node).
May import: `accel.cluster`, `accel.policy`.
"""
