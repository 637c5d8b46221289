"""Snapshot files: kubectl List in YAML/JSON, single objects, multi-doc streams, precise errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from kube.informer import Informer
from kube.protocol import ObjectSource
from kube.snapshot import SnapshotError, SnapshotSource, load_snapshot, parse_snapshot
from kube.testing import make_configmap, make_namespace, make_node, make_pod, until

OBJECTS = [make_node("gpu-1"), make_namespace("team-a"), make_pod("p", "team-a"),
           make_configmap("accel-policy", "accel-system", {"settings.yaml": "mode: warn\n"})]
LIST = {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": OBJECTS}


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(yaml.safe_dump(LIST), id="yaml-list"),
        pytest.param(json.dumps(LIST, indent=2), id="json-list"),
        pytest.param("---\n".join(yaml.safe_dump(o) for o in OBJECTS), id="multi-doc-objects"),
        pytest.param(
            yaml.safe_dump({**LIST, "items": OBJECTS[:2]})
            + "---\n"
            + yaml.safe_dump({**LIST, "items": OBJECTS[2:]}),
            id="multi-doc-lists",
        ),
    ],
)
def test_snapshot_groups_items_by_kind(text: str) -> None:
    snap = parse_snapshot(text)
    assert {k: [o["metadata"]["name"] for o in v] for k, v in snap.items.items() if v} == {
        "nodes": ["gpu-1"], "namespaces": ["team-a"], "pods": ["p"], "configmaps": ["accel-policy"]}


def test_single_object_and_unknown_kinds_are_counted() -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "x"}}
    snap = parse_snapshot(yaml.safe_dump(make_node("n")) + "---\n" + yaml.safe_dump(svc))
    assert [o["metadata"]["name"] for o in snap.of("nodes")] == ["n"] and snap.skipped == {"Service": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "items: [\n  {a: 1\n",
            r"snap.yaml: not valid YAML or JSON at line \d+",
            id="syntax-error-with-line",
        ),
        pytest.param("", "empty snapshot", id="empty-file"),
        pytest.param("- 1\n- 2\n", "expected a mapping", id="top-level-sequence"),
        pytest.param("kind: List\nitems: 3\n", "'items' must be a list", id="items-not-a-list"),
        pytest.param(
            "kind: List\nitems: [{kind: Node, metadata: {name: a}}, 7]\n",
            r"items\[1\]: expected an object",
            id="item-not-a-mapping",
        ),
        pytest.param(
            "kind: List\nitems: [{metadata: {name: a}}]\n",
            r"items\[0\]: missing 'kind'",
            id="item-without-kind",
        ),
        pytest.param(
            "kind: List\nitems: [{kind: Node, metadata: {}}]\n",
            r"items\[0\]: Node without metadata.name",
            id="item-without-name",
        ),
        pytest.param("kind: Pod\nmetadata: {name: p}\n", "no metadata.namespace", id="pod-without-namespace"),
        pytest.param(
            "kind: Node\nmetadata: {name: a}\n---\n[]\n",
            "document 2: expected a mapping",
            id="bad-second-doc",
        ),
    ],
)
def test_snapshot_errors_say_where(text: str, message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        parse_snapshot(text, source="snap.yaml")


def test_load_snapshot_reads_file_and_reports_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps({**LIST, "metadata": {"resourceVersion": "42"}}))
    assert load_snapshot(path).resource_version == "42"
    with pytest.raises(SnapshotError, match=r"nope\.yaml: cannot read snapshot"):
        load_snapshot(tmp_path / "nope.yaml")


async def test_snapshot_source_feeds_an_informer_and_watch_blocks() -> None:
    source = SnapshotSource(parse_snapshot(yaml.safe_dump(LIST)))
    assert isinstance(source, ObjectSource)
    assert [
        o["metadata"]["name"]
        for o in (await source.list("configmaps", "accel-system", name="accel-policy"))[0]
    ] == ["accel-policy"]
    assert (await source.list("configmaps", "other"))[0] == []
    informer = Informer(source, "pods")
    task = asyncio.create_task(informer.run())
    await until(lambda: informer.synced)
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done() and [o["metadata"]["name"] for o in informer.items()] == ["p"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
