"""accel.admission.context: a context built from the previous generation's (its usage, jobs' types and
node totals updated from what changed) equals one built from scratch, generation after generation."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from accel.admission.context import build_context, context_steps
from accel.capacity.inventory import Inventory
from accel.cluster.pods import PodView
from accel.quota.steps import finish_steps
from tests.builders import DEFAULT_NODES, example_policy, gpu_pod, make_inventory

POLICY = example_policy()
JOB = {"training.kubeflow.org/job-name": "llama"}
NODE_NAMES = [n.name for n in DEFAULT_NODES]


def _pool() -> tuple[PodView, ...]:
    pods = []
    for i in range(60):
        node = [None, "h100-1", "a100-1", "l4-1", "a100-mig", "gone-1"][i % 6]
        resource = {"l4-1": "nvidia.com/gpu.shared", "a100-mig": "nvidia.com/mig-1g.10gb"}.get(node or "",
                                                                                              "nvidia.com/gpu")
        pod = gpu_pod(name=f"p{i}", namespace=["nlp", "vision", "research"][i % 3], node=node,
                      resource=resource, labels=JOB if i % 2 else {}, profile=None)
        pods.append(copy.deepcopy(pod))
    return make_inventory(pods).pods


POOL = _pool()
NODE_CHANGE = st.tuples(
    st.sampled_from(NODE_NAMES), st.sampled_from(["cordon", "uncordon", "allocate", "drop"])
)


@settings(max_examples=60, deadline=None)
@given(generations=st.lists(
    st.tuples(st.sets(st.integers(min_value=0, max_value=len(POOL) - 1)), st.lists(NODE_CHANGE, max_size=3)),
    min_size=1, max_size=6,
))
def test_property_a_chained_context_equals_one_built_from_scratch(
    generations: list[tuple[set[int], list[tuple[str, str]]]],
) -> None:
    """Random generations: pods shown (kept by object), nodes kept, cordoned, uncordoned, with other
    allocations (new objects, the same hardware), or gone; each context is built in steps from the
    previous one and compared with `build_context` alone."""
    nodes = {n.name: n for n in DEFAULT_NODES}
    previous = None
    for shown, changes in generations:
        for name, change in changes:
            node = nodes.get(name) or next(n for n in DEFAULT_NODES if n.name == name)
            if change == "drop":
                nodes.pop(name, None)
            else:
                update = (
                    {"cordoned": change == "cordon"} if change != "allocate"
                    else {"allocated": {r: 1 + len(node.allocated) for r in node.accelerators.resources}}
                )
                nodes[name] = node.model_copy(update=update)
        inventory = Inventory(nodes=tuple(sorted(nodes.values(), key=lambda n: n.name)),
                              pods=tuple(POOL[i] for i in sorted(shown)),
                              namespace_labels=make_inventory().namespace_labels)
        chained = finish_steps(context_steps(POLICY, inventory, previous=previous,
                                             charges=previous.charges if previous else None))
        alone = build_context(POLICY, inventory)
        for name in ("usage", "free_units", "present_types", "job_types"):
            assert getattr(chained, name) == getattr(alone, name), name
        previous = chained
