"""Training-time, memory-fit, serving-speed and cost estimates per hardware profile.

Owns `rules` (the numbered estimate rules), `estimator` (apply them to every visible profile, then
rank) and `models_table` (known model sizes).
May import: `accel.cluster`, `accel.policy`, `accel.capacity`, `accel.profiles`.
"""
