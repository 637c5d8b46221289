"""What a GPU-hour costs and how cost annotations are written.

Price of one GPU-hour of a type: the profile's `costPerGpuHour`, else the catalog's list price
(with its source and date in the catalog), else unknown. A pod's cost per hour is that price times
the GPU-equivalents it holds (accel.cluster.gpu_equivalents), so a time-sliced replica or a MIG slice costs
its
fraction. Amounts are written as USD decimal strings with 2 to 4 decimals.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

from accel.cluster.catalog import Catalog
from accel.policy.models import Profile

PRICE_ANNOTATION = "accel.dev/gpu-hour-price"
COST_ANNOTATION = "accel.dev/cost-per-hour"


def gpu_hour_price(profile: Profile | None, accel_type: str | None, catalog: Catalog) -> Decimal | None:
    """USD per GPU-hour for `accel_type` under `profile`; None when nothing prices it."""
    if profile is not None and profile.cost_per_gpu_hour is not None:
        return profile.cost_per_gpu_hour
    listed = catalog.get(accel_type) if accel_type else None
    if listed is not None and listed.price_per_gpu_hour is not None:
        return Decimal(str(listed.price_per_gpu_hour))
    return None


def usd(amount: Decimal | Fraction | float) -> str:
    """USD as a decimal string: at least 2 and at most 4 decimals (`6.20`, `0.2557`)."""
    with localcontext() as exact:
        exact.prec = 80  # absurd GPU counts must still format, not raise
        value = (
            Decimal(amount.numerator) / Decimal(amount.denominator)
            if isinstance(amount, Fraction)
            else Decimal(str(amount))
        )
        text = str(value.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.rstrip('0').ljust(2, '0')}"


def price_annotations(price: Decimal | None, equivalents: Fraction) -> dict[str, str]:
    """{gpu-hour-price, cost-per-hour} for a pod holding `equivalents` GPUs; {} when unpriced."""
    if price is None:
        return {}
    return {PRICE_ANNOTATION: usd(price), COST_ANNOTATION: usd(Fraction(price) * equivalents)}
