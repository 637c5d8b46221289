"""`accel_quota_used_gpus{team,type}` through a sequence of admissions and state changes.

Each /validate records its team's usage once (the usage its quota decision read, plus what it
reserved); the series' values are computed when /metrics is read. They must show exactly what
the last admission (or, after a state change, the watch) left, per quota key.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from kube.fake import FakeCluster
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.builders import example_policy, gpu_pod, make_inventory, review
from webhook.app import ADMITTER, make_app
from webhook.review import parse_review

TEAMS = [{"name": "nlp", "quota": {"nvidia-a100-80gb": 4, "nvidia-h100-80gb": 8, "*": 6}}]


def used(metrics: Metrics) -> dict[str, float]:
    """nlp's series, quota key -> value, as a scrape reads them."""
    prefix = 'accel_quota_used_gpus{team="nlp",type="'
    return {
        line[len(prefix):].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.render().decode().splitlines()
        if line.startswith(prefix)
    }


async def test_used_series_follow_each_admission_and_the_watch() -> None:
    state = ClusterState.static(example_policy(teams=TEAMS), make_inventory())
    metrics = Metrics()
    admitter = make_app(state, metrics=metrics, ledger_store=FakeCluster(), replica_id="t")[ADMITTER]
    admitter.context()
    assert used(metrics) == {"nvidia-a100-80gb": 0.0, "nvidia-h100-80gb": 0.0, "*": 0.0}
    template = gpu_pod(profile="a100-80gb", gpus="2")
    mutated = await admitter.mutate(parse_review(review(copy.deepcopy(template))).request)
    stored: list[dict[str, Any]] = []
    answers = []
    for n in range(3):
        pod = jsonpatch.apply_patch(template, list(mutated.ops))
        pod["metadata"].update(name=f"train-{n}", uid=f"uid-{n}")
        answers.append((await admitter.validate(parse_review(review(pod, uid=f"v{n}")).request)).allowed)
        stored.append(pod)
        a100 = [2.0, 4.0, 4.0][n]  # the third is denied: it reserves nothing
        assert used(metrics) == {"nvidia-a100-80gb": a100, "nvidia-h100-80gb": 0.0, "*": a100}
    assert answers == [True, True, False]
    # The watch shows the two admitted pods (their reservations are now accounted for by it).
    state.update_static(inventory=make_inventory(stored[:2]))
    admitter.context()
    assert used(metrics) == {"nvidia-a100-80gb": 4.0, "nvidia-h100-80gb": 0.0, "*": 4.0}
    # A policy without the h100 line: its series goes, the others stay at the watch's usage.
    without_h100 = [{"name": "nlp", "quota": {"nvidia-a100-80gb": 4, "*": 6}}]
    state.update_static(parsed=example_policy(teams=without_h100))
    admitter.context()
    assert used(metrics) == {"nvidia-a100-80gb": 4.0, "*": 4.0}
