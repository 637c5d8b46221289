"""Kubernetes resource quantities (`"8"`, `"500m"`, `"64Gi"`, `"1e3"`) parsed exactly.

https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/
"""

from __future__ import annotations

import re
from decimal import Decimal

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
# Kubernetes stores quantities as int64 milli-units at most; anything larger is input garbage.
_MAX_QUANTITY = Decimal(2**63)
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$")


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(value: object) -> Decimal:
    """Parse a quantity given as a string or number; raise QuantityError with the bad value."""
    if isinstance(value, bool):
        raise QuantityError(f"quantity {value!r} is a boolean, expected a number like '2' or '500m'")
    if isinstance(value, int | float):
        return Decimal(str(value))
    if not isinstance(value, str):
        raise QuantityError(f"quantity {value!r} must be a string or number, like '2' or '500m'")
    match = _QUANTITY.match(value.strip())
    if not match:
        raise QuantityError(f"{value!r} is not a Kubernetes quantity (examples: '2', '500m', '64Gi')")
    number, suffix = match.groups()
    try:
        result = Decimal(number) * _SUFFIXES[suffix]
    except ArithmeticError as exc:  # decimal.Overflow / InvalidOperation on absurd exponents
        raise QuantityError(f"{value!r} is out of range for a Kubernetes quantity") from exc
    if not result.is_finite() or abs(result) > _MAX_QUANTITY:
        raise QuantityError(f"{value!r} is out of range for a Kubernetes quantity")
    return result


def parse_count(value: object) -> int:
    """An integer count of extended resources (GPUs must be whole numbers)."""
    quantity = parse_quantity(value)
    if quantity != quantity.to_integral_value():
        raise QuantityError(f"{value!r} is not a whole number; extended resources like GPUs must be integers")
    return int(quantity)


def parse_milli(value: object) -> int:
    """CPU-style quantity in milli-units, rounded up as kube-scheduler does."""
    quantity = parse_quantity(value) * 1000
    return int(quantity.to_integral_value(rounding="ROUND_CEILING"))


def parse_bytes(value: object) -> int:
    """Memory-style quantity in bytes, rounded up."""
    return int(parse_quantity(value).to_integral_value(rounding="ROUND_CEILING"))
