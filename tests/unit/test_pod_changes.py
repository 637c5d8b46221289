"""accel.quota.pod_changes: the id() diff and the pods a per-pod sum must take out and put back in."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from accel.capacity.inventory import Inventory
from accel.quota.pod_changes import PodChanges, diff_by_id
from tests.builders import DEFAULT_NODES, gpu_pod, make_inventory

OBJECTS = [object() for _ in range(40)]


@settings(max_examples=100, deadline=None)
@given(views=st.lists(st.lists(st.integers(min_value=0, max_value=39), unique=True), min_size=1, max_size=6),
       as_list=st.booleans())
def test_property_diff_by_id_is_the_set_difference_and_memoised_only_for_tuples(
    views: list[list[int]], as_list: bool,
) -> None:
    """Rule 1 and 4: entering / leaving are exactly the objects only in the new / old view, asked
    twice for a pair of tuples the answer is the remembered one, and a list (mutable) is never
    remembered (a list changed in place is diffed again)."""
    before: list[object] | tuple[object, ...] = ()
    by_id: dict[int, object] = {}
    for indexes in views:
        after = [OBJECTS[i] for i in indexes]
        shown = list(after) if as_list else tuple(after)
        current, entering, leaving = diff_by_id(before, by_id, shown)
        assert current == {id(o): o for o in after}
        assert {id(o) for o in entering} == {id(o) for o in after} - set(by_id)
        assert {id(o) for o in leaving} == set(by_id) - {id(o) for o in after}
        again = diff_by_id(before, by_id, shown)
        assert (again[0] is current) is not as_list
        if as_list and after:
            shown.pop()  # type: ignore[union-attr]
            assert len(diff_by_id(before, by_id, shown)[0]) == len(after) - 1
            shown.append(after[-1])  # type: ignore[union-attr]
        before, by_id = shown, current


def test_only_pods_on_a_node_with_other_hardware_are_rechecked() -> None:
    """Rule 2: a node rebuilt with the same accelerators object (its bound pods changed) rechecks
    nothing; with another accelerators object, or gone, its pods are taken out and put back in."""
    pods = make_inventory([gpu_pod(name="on-h100", node="h100-1"), gpu_pod(name="on-a100", node="a100-1"),
                           gpu_pod(name="pending")]).pods
    changes = PodChanges()
    fresh, leaving, entering = changes.update(Inventory(nodes=DEFAULT_NODES, pods=pods))
    assert fresh and not leaving and len(entering) == 3
    rebuilt = tuple(n.model_copy() if n.name == "h100-1" else n for n in DEFAULT_NODES)
    assert changes.update(Inventory(nodes=rebuilt, pods=pods)) == (False, [], [])
    other = tuple(n.model_copy(update={"accelerators": n.accelerators.model_copy()}) if n.name == "h100-1"
                  else n for n in rebuilt)
    fresh, leaving, entering = changes.update(Inventory(nodes=other, pods=pods))
    assert not fresh and [p.name for p in leaving] == [p.name for p in entering] == ["on-h100"]
    gone = tuple(n for n in other if n.name != "a100-1")
    fresh, leaving, entering = changes.update(Inventory(nodes=gone, pods=pods))
    assert [p.name for p in leaving] == [p.name for p in entering] == ["on-a100"]
    fresh, leaving, entering = changes.update(Inventory(nodes=gone, pods=pods), everything=True)
    assert fresh and not leaving and len(entering) == 3
