"""The CLI contract on the sample cluster: node view, policy validation, profile discovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cli.main import main

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = str(ROOT / "examples" / "cluster.yaml")
POLICY = str(ROOT / "examples" / "policy")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_nodes_json_gives_every_gpu_node_its_canonical_type(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "nodes", "--snapshot", SNAPSHOT, "--policy", POLICY, "-o", "json")
    assert code == 0
    types = {row["name"]: row["type"] for row in json.loads(out)["nodes"]}
    assert types["gpu-h200-01"] == "nvidia-h200-141gb"
    assert types["gpu-a100-mig-01"] == "nvidia-a100-80gb"
    assert types["gpu-mi300x-01"] == "amd-mi300x-192gb"
    assert types["gpu-legacy-01"] == "unknown"
    assert "cpu-01" not in types


def test_nodes_table_filters_and_sorts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "nodes",
        "--snapshot",
        SNAPSHOT,
        "--policy",
        POLICY,
        "--type",
        "nvidia-h100-80gb",
        "--sort",
        "free",
        "--desc",
    )
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].startswith("NODE")
    assert all("H100" in line for line in lines[1:]) and len(lines) == 6
    assert lines[-1].startswith("gpu-h100-01")  # fully used: least free, last when descending


def test_nodes_rejects_unknown_type_with_the_closest_known(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "nodes", "--snapshot", SNAPSHOT, "--policy", POLICY, "--type", "nvidia-a101")
    assert (
        code == 1
        and "unknown accelerator type 'nvidia-a101' (did you mean" in err
        and "nvidia-a100-80gb" in err
    )


def test_policy_validate_accepts_the_sample(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "validate", POLICY)
    assert code == 0 and "valid (8 profiles, 4 teams" in out


def test_policy_validate_lists_every_error_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "profiles.yaml").write_text(
        "profiles:\n- name: a\n  accelerators: [{type: nvidia-a100-81gb}]\n- name: a\n"
    )
    (tmp_path / "teams.yaml").write_text("teams:\n- name: t\n  quota: {nvidia-a100-80gb: -1}\n")
    code, _, err = run(capsys, "policy", "validate", str(tmp_path))
    assert code == 1
    assert "3 error(s)" in err
    assert (
        "profiles.yaml: profiles[0].accelerators[0].type: unknown accelerator type 'nvidia-a100-81gb'" in err
    )


def test_policy_validate_reads_a_configmap_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = {p.name: p.read_text() for p in Path(POLICY).glob("*.yaml")}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "accel-policy"}, "data": data}
    (tmp_path / "cm.yaml").write_text(yaml.safe_dump(configmap))
    assert run(capsys, "policy", "validate", str(tmp_path / "cm.yaml"))[0] == 0


def test_discover_drafts_a_pasteable_profile(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "profiles",
        "discover",
        "--snapshot",
        SNAPSHOT,
        "--policy",
        POLICY,
        "--nodes",
        "gpu-h100-01,gpu-h100-02",
        "--name",
        "h100-pool",
    )
    assert code == 0
    profile = yaml.safe_load(out)["profiles"][0]
    assert profile["name"] == "h100-pool"
    assert profile["accelerators"] == [{"type": "nvidia-h100-80gb"}]
    assert profile["gpus"]["max"] == 8
    assert "nodeSelector" not in profile  # drafted on the type: no product string, leaf or zone pinned
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in profile["tolerations"]


def test_discover_by_selector_finds_time_slicing(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "profiles",
        "discover",
        "--snapshot",
        SNAPSHOT,
        "--policy",
        POLICY,
        "-l",
        "nvidia.com/gpu.sharing-strategy=time-slicing",
        "-o",
        "json",
    )
    draft = json.loads(out)
    assert code == 0 and draft["nodes"] == ["gpu-l4-shared-01"]
    assert draft["profile"]["sharing"] == "time-sliced" and draft["profile"]["replicas"] == 4


def test_missing_snapshot_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "nodes", "--snapshot", "/nonexistent/x.yaml", "--policy", POLICY)
    assert code == 1 and "/nonexistent/x.yaml" in err
