"""What the hardware is: accelerator types, vendor label readers, node labels, pods, quantities.

Owns the catalog (canonical type names), per-vendor detection (NVIDIA, AMD, Intel), label
normalisation, the typed pod view, resource quantities and the GPU-equivalents of a resource unit.
May import: nothing else in `accel` (the bottom layer).
"""
