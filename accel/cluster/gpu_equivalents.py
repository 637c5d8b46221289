"""GPU-equivalents: how much of a physical GPU one unit of an accelerator resource is.

Quota is written in GPU-equivalents per canonical type (design.md): a whole GPU counts 1, a
time-sliced replica 1/replicas, a MIG slice `g / max_g` of its GPU (compute slices, so a 3g.40gb
on an A100 counts 3/7). Fractions are exact (`fractions.Fraction`) so quota sums never drift.
"""

from __future__ import annotations

import re
from fractions import Fraction

from accel.cluster.catalog import AcceleratorType

MIG_RESOURCE = re.compile(r"^nvidia\.com/mig-(\d+)g\.(\d+)gb(?:\+me)?(?:\.shared)?$")
SHARED_SUFFIX = ".shared"


def mig_slices(accel_type: AcceleratorType | None) -> int:
    """Compute slices of one GPU of this type (7 on A100/H100/H200/B200, 4 on A30)."""
    if accel_type is None or not accel_type.mig_profiles:
        return 7
    return max(int(profile.split("g.", 1)[0]) for profile in accel_type.mig_profiles)


def unit_fraction(
    resource: str,
    *,
    accel_type: AcceleratorType | None,
    replicas: int = 1,
    mig_single_profile: str | None = None,
) -> Fraction:
    """GPU-equivalents of ONE unit of `resource` on a GPU of `accel_type`.

    `replicas` is the time-slicing factor of the node (or profile); `mig_single_profile` the
    profile when a MIG `single`-strategy node advertises slices as plain `nvidia.com/gpu`.
    """
    shared = resource.endswith(SHARED_SUFFIX) or replicas > 1
    divisor = Fraction(max(replicas, 1)) if shared else Fraction(1)
    mig = MIG_RESOURCE.match(resource)
    if mig:
        return Fraction(int(mig.group(1)), mig_slices(accel_type)) / divisor
    if mig_single_profile and resource.startswith("nvidia.com/gpu"):
        compute = int(mig_single_profile.split("g.", 1)[0])
        return Fraction(compute, mig_slices(accel_type)) / divisor
    return Fraction(1) / divisor


def format_gpus(amount: Fraction) -> str:
    """Human form: whole numbers plain, fractions to two decimals (`2`, `0.25`, `1.43`)."""
    if amount.denominator == 1:
        return str(amount.numerator)
    return f"{float(amount):.2f}".rstrip("0").rstrip(".")
