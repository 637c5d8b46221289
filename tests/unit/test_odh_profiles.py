"""OpenDataHub HardwareProfiles as accel profiles: mapping, errors, clashes, watch and reload."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from accel.cluster.catalog import load_builtin_catalog
from accel.policy.loading import parse_policy
from accel.policy.models import PolicyInvalid, Sharing
from accel.policy.odh_profiles import TYPES_ANNOTATION, profile_from_object
from kube.errors import NotFound
from kube.fake import FakeCluster
from kube.hardware_profile_source import HardwareProfileSource
from kube.informer import ClusterWatcher, Informer
from kube.policy_source import PolicyMeta
from kube.testing import RecordingSleep, make_hardware_profile, until

CATALOG = load_builtin_catalog()
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
SOURCE = "HardwareProfile opendatahub/{} (infrastructure.opendatahub.io/v1alpha1)"


def mapped(obj: dict[str, Any]) -> Any:
    profile, errors = profile_from_object(obj, CATALOG)
    assert errors == [] and profile is not None
    return profile


def test_node_profile_maps_counts_type_tolerations_and_keeps_other_selector_keys() -> None:
    obj = make_hardware_profile("h100", default="2", maximum=8, node_selector={**H100, "pool": "train"})
    obj["spec"]["scheduling"]["node"]["tolerations"] = [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    external = mapped(obj)
    p = external.profile
    assert (p.name, p.display_name, p.types, p.gpus.default, p.gpus.max) == (
        "h100",
        "H100",
        ("nvidia-h100-80gb",),
        2,
        8,
    )
    assert dict(p.node_selector) == {"pool": "train"}  # the product key became accel's affinity
    assert p.tolerations[0].key == "nvidia.com/gpu" and p.sharing is Sharing.EXCLUSIVE
    assert (external.namespace, external.local_queue, p.kueue_local_queue) == ("opendatahub", None, None)


@pytest.mark.parametrize(("gpu", "annotations", "sharing", "extra"), [
    ("nvidia.com/gpu.shared", {"accel.dev/time-slicing-replicas": "4"}, Sharing.TIME_SLICED,
     {"shared_resource_name": "nvidia.com/gpu.shared", "replicas": 4}),
    ("nvidia.com/mig-1g.10gb", {}, Sharing.MIG, {"mig_profile": "1g.10gb"}),
    ("amd.com/gpu", {}, Sharing.EXCLUSIVE, {}),
], ids=["time-sliced-from-shared-name", "mig-from-mig-resource", "amd-exclusive"])
def test_sharing_comes_from_the_resource_name(
    gpu: str, annotations: dict[str, str], sharing: Sharing, extra: dict[str, Any]
) -> None:
    types = "nvidia-a100-80gb" if "amd" not in gpu else "amd-mi300x-192gb"
    p = mapped(
        make_hardware_profile("p", gpu=gpu, annotations={TYPES_ANNOTATION: types, **annotations})
    ).profile
    assert p.sharing is sharing
    assert {k: getattr(p, k) for k in extra} == extra


def test_annotation_gives_ordered_multi_type_profile_and_queue_profile_keeps_its_queue() -> None:
    obj = make_hardware_profile("big", queue="team-a-queue",
                                annotations={TYPES_ANNOTATION: "nvidia-h200-141gb, nvidia-a100-80gb",
                                             "accel.dev/cost-per-gpu-hour": "2.5"})
    external = mapped(obj)
    assert external.profile.types == ("nvidia-h200-141gb", "nvidia-a100-80gb")
    assert external.local_queue == external.profile.kueue_local_queue == "team-a-queue"
    assert str(external.profile.cost_per_gpu_hour) == "2.5"


def test_no_type_information_is_a_generic_profile_and_cpu_only_is_not_a_profile() -> None:
    assert mapped(make_hardware_profile("any")).profile.is_generic
    assert profile_from_object(make_hardware_profile("cpu", gpu=None), CATALOG) == (None, [])


def test_deprecated_dashboard_group_reads_node_selectors_list() -> None:
    obj = {"apiVersion": "dashboard.opendatahub.io/v1", "kind": "HardwareProfile",
           "metadata": {"name": "old", "namespace": "opendatahub"},
           "spec": {"displayName": "Old", "enabled": False,
                    "identifiers": [{"identifier": "nvidia.com/gpu", "displayName": "GPU", "minCount": 1,
                                     "maxCount": 4, "defaultCount": 1}],
                    "nodeSelectors": [{"key": "nvidia.com/gpu.product", "value": "NVIDIA-A100-SXM4-80GB"}],
                    "tolerations": [{"key": "gpu", "operator": "Exists"}]}}
    p = mapped(obj).profile
    assert (p.types, p.enabled, p.gpus.max, p.tolerations[0].key) == (("nvidia-a100-80gb",), False, 4, "gpu")


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        (
            lambda o: o["metadata"]["annotations"].update({TYPES_ANNOTATION: "nvidia-a100-81gb"}),
            f"metadata.annotations[{TYPES_ANNOTATION}]",
            "unknown accelerator type 'nvidia-a100-81gb'",
        ),
        (
            lambda o: o["spec"]["scheduling"]["node"]["nodeSelector"].update(
                {"nvidia.com/gpu.product": "NVIDIA-Z9000"}
            ),
            "nodeSelector[nvidia.com/gpu.product]",
            "names no known accelerator type",
        ),
        (
            lambda o: o["spec"]["identifiers"][1].update({"defaultCount": "two"}),
            "spec.identifiers[1].defaultCount",
            "not a whole number",
        ),
        (
            lambda o: o["spec"]["identifiers"][1].update({"defaultCount": 4, "maxCount": 2}),
            "spec.identifiers[1].defaultCount",
            "above maxCount 2",
        ),
        (
            lambda o: o["spec"]["identifiers"].append(
                {"identifier": "amd.com/gpu", "resourceType": "Accelerator"}
            ),
            "spec.identifiers",
            "accel maps one accelerator per profile",
        ),
        (
            lambda o: o["metadata"]["annotations"].update({"accel.dev/cost-per-gpu-hour": "cheap"}),
            "metadata.annotations[accel.dev/cost-per-gpu-hour]",
            "not a price",
        ),
    ],
    ids=[
        "unknown-annotated-type",
        "unknown-product-label",
        "count-not-a-number",
        "default-above-max",
        "two-accelerators",
        "bad-price",
    ],
)
def test_bad_hardware_profiles_are_reported_under_the_object_name(
    change: Any, path: str, fragment: str
) -> None:
    obj = make_hardware_profile("bad", node_selector=dict(H100))
    change(obj)
    profile, errors = profile_from_object(obj, CATALOG)
    assert profile is None
    assert [(e.file, e.path) for e in errors] == [(SOURCE.format("bad"), path)]
    assert fragment in errors[0].message


def test_names_are_shared_with_profiles_yaml_and_a_clash_names_both_sources() -> None:
    files = {"profiles.yaml": "profiles:\n- name: h100\n  accelerators: [{type: nvidia-h100-80gb}]\n",
             "teams.yaml": "teams:\n- name: t\n  allowedProfiles: [h100, odh-a100]\n"}
    ok = parse_policy(files, CATALOG, hardware_profiles=[
        make_hardware_profile("odh-a100", node_selector={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"})])
    assert ok.policy.profile("odh-a100") is not None and ok.policy.profile("odh-a100").types == (
        "nvidia-a100-80gb",
    )
    with pytest.raises(PolicyInvalid) as caught:  # "ml" is trusted here: hardwareProfileNamespaces
        trusting_ml = {**files, "settings.yaml": "hardwareProfileNamespaces: [opendatahub, ml]\n"}
        parse_policy(trusting_ml, CATALOG, hardware_profiles=[make_hardware_profile("h100", namespace="ml"),
                                                         make_hardware_profile("odh-a100"),
                                                         make_hardware_profile("odh-a100", namespace="ml")])
    found = {(e.file, e.message.split(";")[0]) for e in caught.value.errors}
    assert found == {
        (
            "HardwareProfile ml/h100 (infrastructure.opendatahub.io/v1alpha1)",
            "profile name 'h100' is also defined by profiles.yaml profiles[0]",
        ),
        (
            SOURCE.format("odh-a100"),
            "profile name 'odh-a100' is also defined by HardwareProfile ml/odh-a100 "
            "(infrastructure.opendatahub.io/v1alpha1)",
        ),
    }


async def test_absent_crd_counts_as_synced_and_empty_then_is_picked_up_when_installed() -> None:
    cluster = FakeCluster()
    kind = "hardwareprofiles.infrastructure.opendatahub.io"
    cluster.fail_next(f"list {kind}", NotFound("the server could not find the requested resource"))
    delays: list[float] = []
    recheck = asyncio.Event()

    async def sleep(seconds: float) -> None:  # holds the informer in its recheck wait until released
        delays.append(seconds)
        await recheck.wait()

    informer = Informer(cluster, kind, optional=True, sleep=sleep, absent_recheck_s=60)
    task = asyncio.create_task(informer.run())
    await until(lambda: informer.synced and delays == [60])
    assert informer.absent and informer.items() == []
    cluster.apply(make_hardware_profile("h100", node_selector=dict(H100)))  # "the CRD was installed"
    recheck.set()
    await until(lambda: len(informer.items()) == 1)
    assert not informer.absent
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_hardware_profile_changes_revalidate_and_a_rejection_is_an_event_on_the_object() -> None:
    cluster = FakeCluster()
    watcher = ClusterWatcher(cluster, sleep=RecordingSleep())
    seen: list[list[str]] = []

    def on_change(objects: list[dict[str, Any]], meta: PolicyMeta) -> list[str]:
        seen.append(sorted(o["metadata"]["name"] for o in objects))
        try:
            parse_policy({}, CATALOG, hardware_profiles=objects)
        except PolicyInvalid as exc:
            return [str(e) for e in exc.errors]
        return []

    source = HardwareProfileSource(watcher, on_change, events=cluster)
    task = asyncio.create_task(watcher.run())
    cluster.apply(make_hardware_profile("h100", node_selector=dict(H100)))
    await until(lambda: seen == [["h100"]])
    cluster.apply(make_hardware_profile("bad", annotations={TYPES_ANNOTATION: "nope"}))
    await until(lambda: len(seen) == 2)
    await source.drain()
    (event,) = cluster.events
    assert (event["reason"], event["involvedObject"]["name"], event["involvedObject"]["kind"]) == (
        "PolicyRejected", "bad", "HardwareProfile")
    assert "unknown accelerator type 'nope'" in event["message"]
    assert watcher.fresh(60)[0]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_hardware_profiles_outside_the_trusted_namespaces_are_ignored() -> None:
    # issue 21: a HardwareProfile in a team's namespace (its users may be allowed to write one) must
    # not add a profile every team may use, at its own price, nor freeze the policy with a clash.
    files = {"profiles.yaml": "profiles:\n- name: h100\n  accelerators: [{type: nvidia-h100-80gb}]\n",
             "teams.yaml": "teams:\n- name: t\n"}
    hostile = [make_hardware_profile("h100", namespace="team-t"),  # clashes with profiles.yaml
               make_hardware_profile("free-h100", namespace="team-t", node_selector=dict(H100),
                                     annotations={"accel.dev/cost-per-gpu-hour": "0"}),
               make_hardware_profile("odh-h100", node_selector=dict(H100))]  # opendatahub: trusted by default
    parsed = parse_policy(files, CATALOG, hardware_profiles=hostile)
    assert [p.name for p in parsed.policy.profiles] == ["h100", "odh-h100"]
    assert parsed.policy.profile("h100").types == ("nvidia-h100-80gb",)  # profiles.yaml's, untouched
    with pytest.raises(PolicyInvalid):  # the same objects from a namespace the admin names
        parse_policy({**files, "settings.yaml": "hardwareProfileNamespaces: [team-t]\n"}, CATALOG,
                     hardware_profiles=hostile)


@pytest.mark.parametrize("obj", [
    make_hardware_profile("node", maximum="4", node_selector=dict(H100)),
    make_hardware_profile("queued", queue="default"),
    make_hardware_profile("cpu", gpu=None),
], ids=["node-scheduled", "queue-scheduled", "cpu-only"])
def test_the_builder_makes_objects_the_published_crd_accepts(obj: dict[str, Any]) -> None:
    from tests.unit.crd_schema import load_schema, validate

    assert validate(obj, load_schema("infrastructure.opendatahub.io_hardwareprofiles.yaml", "v1alpha1")) == []


def test_the_published_status_schema_would_prune_anything_accel_wrote_there() -> None:
    from tests.unit.crd_schema import load_schema

    status = load_schema("infrastructure.opendatahub.io_hardwareprofiles.yaml", "v1alpha1")["properties"][
        "status"
    ]
    assert status == {
        "description": status["description"],
        "type": "object",
    }  # no fields, no preserve-unknown


async def test_accel_writes_detected_types_and_availability_as_annotations_once() -> None:
    from pathlib import Path

    from cli.serve import ClusterDeps, build_state
    from kube.testing import make_configmap, make_namespace, make_node
    from serving.hardware_profile_notes import annotate_round
    from serving.metrics import Metrics

    root = Path(__file__).resolve().parents[2]
    cluster = FakeCluster(controller_namespace="accel-system")
    cluster.apply(make_namespace("accel-system"))
    cluster.apply(make_node("gpu-1", labels=dict(H100), allocatable={"nvidia.com/gpu": "8"}))
    cluster.apply(
        make_configmap(
            "accel-policy",
            "accel-system",
            {p.name: p.read_text() for p in (root / "examples" / "policy").glob("*.yaml")},
        )
    )
    cluster.apply(make_hardware_profile("odh-h100", node_selector=dict(H100)))
    cluster.apply(make_hardware_profile("odh-cpu", gpu=None))
    deps = ClusterDeps(
        source=cluster, cas=cluster, binder=cluster, events=cluster, tokens=cluster, annotator=cluster
    )
    state = build_state(deps, namespace="accel-system", policy_files=None, metrics=Metrics(), app_name="t",
                        min_rebuild_interval_s=0.0)
    task = asyncio.create_task(state.run())
    try:
        await until(lambda: state.ready()[0] and state.view().parsed.policy.profile("odh-h100") is not None)
        assert await annotate_round(state, cluster) == 1
        notes = cluster.get("hardwareprofiles.infrastructure.opendatahub.io", "odh-h100", "opendatahub")[
            "metadata"
        ]["annotations"]
        assert notes["accel.dev/detected-accelerator-types"] == "nvidia-h100-80gb"
        assert (
            notes["accel.dev/availability"]
            == '{"available": true, "availableGpus": 8, "totalGpus": 8, "pricePerGpuHour": 3.78}'
        )
        assert not cluster.get("hardwareprofiles.infrastructure.opendatahub.io", "odh-cpu", "opendatahub")[
            "metadata"
        ]["annotations"]
        await until(
            lambda: (
                "accel.dev/availability"
                in (state.watcher.hardware_profile_objects()[0]["metadata"].get("annotations") or {})
                or "accel.dev/availability"
                in (state.watcher.hardware_profile_objects()[-1]["metadata"].get("annotations") or {})
            )
        )
        assert await annotate_round(state, cluster) == 0  # unchanged: not rewritten
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_accels_own_notes_on_a_hardware_profile_do_not_revalidate_the_policy() -> None:
    cluster = FakeCluster()
    watcher = ClusterWatcher(cluster, sleep=RecordingSleep())
    offered: list[int] = []
    HardwareProfileSource(watcher, lambda objects, meta: offered.append(len(objects)) or [], events=cluster)
    task = asyncio.create_task(watcher.run())
    cluster.apply(make_hardware_profile("h100", node_selector=dict(H100)))
    await until(lambda: offered == [1])
    await cluster.annotate("hardwareprofiles.infrastructure.opendatahub.io", "opendatahub", "h100",
                           {"accel.dev/availability": "{}"})
    cluster.apply(make_hardware_profile("h100", node_selector=dict(H100), maximum=2))  # a real change
    await until(lambda: len(offered) == 2)
    assert offered == [1, 1]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_policy_validate_checks_hardware_profiles_with_the_policy(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml as pyyaml

    from cli.main import main

    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    listing = tmp_path / "hwp.yaml"
    listing.write_text(
        pyyaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    make_hardware_profile("a100-80gb", node_selector=dict(H100)),
                    make_hardware_profile("odh-h100", node_selector=dict(H100)),
                ],
            }
        )
    )
    assert (
        main(["policy", "validate", str(root / "examples" / "policy"), "--hardware-profiles", str(listing)])
        == 1
    )
    err = capsys.readouterr().err
    assert (
        "HardwareProfile opendatahub/a100-80gb (infrastructure.opendatahub.io/v1alpha1): metadata.name" in err
    )
    assert "also defined by profiles.yaml profiles[" in err and "odh-h100" not in err
