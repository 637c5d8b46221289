"""Quantities and the pod view: effective requests follow Kubernetes' init/sidecar rule."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from accel.cluster.pods import parse_pod
from accel.cluster.quantity import (
    QuantityError,
    parse_bytes,
    parse_count,
    parse_milli,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2", Decimal(2)),
        ("500m", Decimal("0.5")),
        ("1Gi", Decimal(2**30)),
        ("1e3", Decimal(1000)),
        ("1.5k", Decimal(1500)),
        (4, Decimal(4)),
    ],
    ids=["plain", "milli", "binary-giga", "exponent", "decimal-kilo", "int"],
)
def test_quantities_parse_exactly(text: Any, expected: Decimal) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "5 Gi", True, None, [1]], ids=str)
def test_bad_quantities_raise_a_clear_error(bad: Any) -> None:
    with pytest.raises(QuantityError, match=r"quantity|Kubernetes"):
        parse_quantity(bad)


def test_counts_must_be_whole() -> None:
    assert parse_count("2") == 2
    with pytest.raises(QuantityError, match="whole number"):
        parse_count("500m")


def test_cpu_rounds_up_and_memory_in_bytes() -> None:
    assert parse_milli("0.0001") == 1
    assert parse_bytes("64Mi") == 64 * 2**20


def _container(
    limits: dict[str, str] | None = None, requests: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if limits:
        resources["limits"] = limits
    if requests:
        resources["requests"] = requests
    return {"name": "c", "resources": resources, **extra}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"containers": [_container({"nvidia.com/gpu": "2"})]}, {"nvidia.com/gpu": 2}),
        (
            {"containers": [_container({"nvidia.com/gpu": "1"}), _container({"nvidia.com/gpu": "2"})]},
            {"nvidia.com/gpu": 3},
        ),
        (
            {
                "containers": [_container({"nvidia.com/gpu": "1"})],
                "initContainers": [_container({"nvidia.com/gpu": "4"})],
            },
            {"nvidia.com/gpu": 4},
        ),
        (
            {
                "containers": [_container({"nvidia.com/gpu": "1"})],
                "initContainers": [_container({"nvidia.com/gpu": "1"}, restartPolicy="Always")],
            },
            {"nvidia.com/gpu": 2},
        ),
        (
            {"containers": [_container(requests={"nvidia.com/mig-1g.10gb": "1"})]},
            {"nvidia.com/mig-1g.10gb": 1},
        ),
        ({"containers": [_container({"cpu": "2"})]}, {}),
        ({"containers": [_container({"nvidia.com/gpu": "lots"})]}, {}),
        ({"containers": "not-a-list"}, {}),
    ],
    ids=[
        "limit-implies-request",
        "containers-sum",
        "init-container-max",
        "sidecar-adds",
        "mig-request",
        "no-gpu",
        "garbage-count-ignored",
        "garbage-spec",
    ],
)
def test_effective_accelerator_requests(spec: dict[str, Any], expected: dict[str, int]) -> None:
    assert dict(parse_pod({"metadata": {"name": "p"}, "spec": spec}).accelerators) == expected


def test_pod_view_reads_profile_node_and_phase() -> None:
    pod = parse_pod(
        {
            "metadata": {
                "name": "p",
                "namespace": "ns",
                "annotations": {"opendatahub.io/hardware-profile-name": "odh"},
            },
            "spec": {"nodeName": "n1", "containers": [_container({"nvidia.com/gpu": "1"}, {"cpu": "500m"})]},
            "status": {"phase": "Succeeded"},
        }
    )
    assert (pod.requested_profile, pod.node_name, pod.terminal, pod.cpu_milli) == ("odh", "n1", True, 500)


@pytest.mark.parametrize("huge", ["1e999999", "1e30", "99999999999999999999Ei"], ids=str)
def test_absurd_quantities_are_errors_not_crashes(huge: str) -> None:
    with pytest.raises(QuantityError, match="out of range"):
        parse_quantity(huge)
