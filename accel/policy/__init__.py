"""The policy ConfigMap as typed models: settings, hardware profiles, teams; parsing and prices.

Owns `models` (the contract in design.md "Policy"), `loading` (parse and cross-validate every
file, collecting all errors) and `pricing` (what a GPU-hour of a type costs).
May import: `accel.cluster`.
"""
