"""A pod's author edits its annotations after admission (issue 21's open hole), on a real API server.

The webhooks decide at CREATE; `kubectl annotate --overwrite` later sends a pod UPDATE. Each team
`e2e-edits-*` has per-type quota (B200: 2, A100: 1). Parked pods (profile `parked`, B200: no such
node, so they stay Pending) hold the B200 line; one A100 pod holds the A100 line.
1. With the shipped UPDATE webhook, editing the type or the profile is refused with the reason.
2. With that webhook gone (its failurePolicy is Ignore: an outage lets the edit through), the
   edited pods keep their charge: the B200 line stays full and the A100 line is free exactly when
   the A100 pod is deleted. The delete is the barrier: once the webhook's watch shows it, the
   watch has also shown the earlier edits (one pod watch, in resourceVersion order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.e2e import cluster
from tests.e2e.kubectl import KubectlError, wait_until

REFUSED, OPEN = "e2e-edits-refused", "e2e-edits-open"  # one team per case (cluster.e2e_policy)
TYPE_KEY = "accelerator.opendatahub.io/type"
A100 = "nvidia-a100-80gb"
B200 = "nvidia-b200-180gb"
UPDATE_HOOK = "validate-update.pods.accel.dev"


def _create(e2e: cluster.E2ECluster, ns: str, name: str, profile: str) -> dict | None:
    pod = cluster.gpu_pod(name, team=ns.rsplit("-", 1)[0], gpus=1, profile=profile)
    pod["metadata"]["namespace"] = ns
    try:
        return e2e.kubectl.create(pod)
    except KubectlError:
        return None


def _annotate(e2e: cluster.E2ECluster, ns: str, pod: str, *pairs: str) -> str:
    return e2e.kubectl.run("annotate", "--overwrite", "pod", pod, "-n", ns, *pairs)


def _parked_pair(e2e: cluster.E2ECluster, ns: str) -> list[str]:
    names = ["parked-0", "parked-1"]
    for name in names:
        assert _create(e2e, ns, name, cluster.PARKED_PROFILE) is not None
    notes = e2e.kubectl.get("pod", "parked-0", namespace=ns)["metadata"]["annotations"]
    assert notes[TYPE_KEY] == B200
    return names


def test_the_update_webhook_refuses_type_and_profile_edits(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str]
) -> None:
    ns = team_namespace(REFUSED)
    _parked_pair(e2e, ns)
    for pair in (f"{TYPE_KEY}={A100}", "accel.dev/profile=a100-only", "accel.dev/gpu-hour-price=0.01"):
        with pytest.raises(KubectlError) as refused:
            _annotate(e2e, ns, "parked-0", pair)
        message = refused.value.stderr
        assert "cannot be changed after admission" in message and pair.split("=")[0] in message, message
        assert "delete the pod and create it again" in message, message
    _annotate(e2e, ns, "parked-0", "example.com/note=still-editable")  # other annotations stay the author's
    notes = e2e.kubectl.get("pod", "parked-0", namespace=ns)["metadata"]["annotations"]
    assert notes[TYPE_KEY] == B200 and notes["accel.dev/profile"] == cluster.PARKED_PROFILE
    assert notes["example.com/note"] == "still-editable"


@pytest.fixture
def without_update_webhook(e2e: cluster.E2ECluster) -> Iterator[None]:
    """The shipped webhooks minus the UPDATE entry (as during its outage), restored afterwards."""
    from tests.e2e import outofcluster

    servers = e2e.servers
    if servers is None:
        pytest.skip("in-cluster mode: the webhook configurations are the deployed ones")
    url_base = f"https://{servers.host}:{servers.ports['webhook']}"
    strip = servers.match_conditions_stripped
    ca = servers.ca.read_bytes()
    configs = outofcluster.webhook_configs(e2e, url_base, ca, strip_match_conditions=strip)
    for config in configs:
        config["webhooks"] = [w for w in config["webhooks"] if w["name"] != UPDATE_HOOK]
        e2e.kubectl.apply(config)
    try:
        yield
    finally:
        outofcluster.apply_webhook_configs(e2e, servers, url_base=url_base, cleanup=False)


def test_without_the_update_webhook_edits_move_no_charge(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str], without_update_webhook: None
) -> None:
    ns = team_namespace(OPEN)
    parked = _parked_pair(e2e, ns)
    assert _create(e2e, ns, "a100-holder", "a100-only") is not None  # the A100 line (1) is full
    assert _create(e2e, ns, "parked-2", cluster.PARKED_PROFILE) is None  # so is the B200 line (2)
    forged = (f"{TYPE_KEY}={A100}", f"accel.dev/quota-type={A100}", "accel.dev/profile=a100-only")
    # The API server applies the changed configuration asynchronously: poll until the edit goes through.
    wait_until(lambda: _annotate(e2e, ns, parked[0], *forged), timeout_s=30,
               what="the edit without the webhook")  # fmt: skip
    _annotate(e2e, ns, parked[1], *forged)
    notes = e2e.kubectl.get("pod", parked[1], namespace=ns)["metadata"]["annotations"]
    assert notes[TYPE_KEY] == A100 and notes["accel.dev/profile"] == "a100-only"  # the hole was open
    e2e.kubectl.run("delete", "pod", "a100-holder", "-n", ns, "--grace-period=0", "--force", "--wait=true")
    # Freed once the webhook's watch shows the delete. Charged by their annotations, the two
    # edited pods would now hold 2 of the 1 A100 and this would never be admitted.
    wait_until(lambda: _create(e2e, ns, "a100-again", "a100-only"), timeout_s=30,
               what="an A100 pod after the A100 holder was deleted")  # fmt: skip
    # The watch has shown the edits too: the B200 line is still full, the A100 line exactly full.
    assert _create(e2e, ns, "parked-3", cluster.PARKED_PROFILE) is None, "the edits freed B200 quota"
    assert _create(e2e, ns, "a100-over", "a100-only") is None, "the A100 line is over its quota"
    for name in parked:  # still Pending, still unbound
        assert not e2e.kubectl.get("pod", name, namespace=ns)["spec"].get("nodeName")
