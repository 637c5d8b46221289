"""accel.cluster.pods: the one-walk effective requests equal Kubernetes' per-resource rule for any pod."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from accel.cluster.labels import is_accelerator_resource
from accel.cluster.pods import (
    accelerator_requests,
    container_requests,
    parse_pod,
)
from accel.cluster.quantity import QuantityError, parse_bytes, parse_count, parse_milli

RESOURCES = ["cpu", "memory", "nvidia.com/gpu", "amd.com/gpu", "nvidia.com/mig-1g.10gb", "example.com/foo"]
VALUES = ["1", "2", "4", "0", "500m", "1Gi", "-1", "bogus", "1.5"]


def reference(spec: Mapping[str, Any], resource: str, parse: Callable[[Any], int]) -> int:
    """max(max(regular init containers), sum(app containers) + sum(sidecar init containers)), literally."""
    init = [c for c in spec.get("initContainers", []) if isinstance(c, dict)]
    running = [c for c in spec.get("containers", []) if isinstance(c, dict)] + [
        c for c in init if c.get("restartPolicy") == "Always"
    ]
    regular = [c for c in init if c.get("restartPolicy") != "Always"]

    def amount(container: Mapping[str, Any]) -> int:
        value = container_requests(container).get(resource)
        try:
            return max(0, parse(value)) if value is not None else 0
        except QuantityError:
            return 0

    return max([sum(amount(c) for c in running), *(amount(c) for c in regular)])


resource_maps = st.dictionaries(st.sampled_from(RESOURCES), st.sampled_from(VALUES), max_size=3)
containers = st.builds(
    lambda requests, limits, sidecar: {
        "name": "c",
        "resources": {"requests": requests, "limits": limits},
        **({"restartPolicy": "Always"} if sidecar else {}),
    },
    resource_maps,
    resource_maps,
    st.booleans(),
)
specs = st.fixed_dictionaries({"containers": st.lists(containers, max_size=3)},
                              optional={"initContainers": st.lists(containers, max_size=3)})


@settings(max_examples=300, deadline=None)
@given(spec=specs)
def test_one_walk_equals_the_per_resource_rule(spec: dict[str, Any]) -> None:
    expected = {
        r: n
        for r in sorted(RESOURCES)
        if is_accelerator_resource(r) and (n := reference(spec, r, parse_count)) > 0
    }
    assert accelerator_requests(spec) == expected
    assert list(accelerator_requests(spec)) == sorted(expected)
    view = parse_pod({"spec": spec})
    assert dict(view.accelerators) == expected
    assert view.cpu_milli == reference(spec, "cpu", parse_milli)
    assert view.memory_bytes == reference(spec, "memory", parse_bytes)
