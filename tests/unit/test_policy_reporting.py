"""Policy validation reports every error, once (issue 14 section 5; accel.policy.loading rules 1-4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from accel.cluster.catalog import load_builtin_catalog
from accel.policy.loading import parse_policy
from accel.policy.models import PolicyInvalid
from cli.main import main
from tests.unit.test_policy import errors_of, sample_files

PROFILES = (
    "profiles:\n- name: big\n  accelerators: [{type: nvidia-a100-80gb}]\n"
    "- name: large-any\n  accelerators: [{type: nvidia-h100-80gb}]\n"
)


def test_a_team_with_a_bad_quota_still_gets_its_unknown_profile_reported() -> None:
    found = errors_of(
        {
            "profiles.yaml": PROFILES,
            "teams.yaml": "teams:\n- name: t\n  quota: {nvidia-a100-80gb: -1}\n  allowedProfiles: [ghost]\n",
        }
    )
    assert [(f, p) for f, p, _ in found] == [
        ("teams.yaml", "teams[0].quota"),
        ("teams.yaml", "teams[0].allowedProfiles[0]"),
    ]


def test_one_yaml_syntax_error_is_one_error_with_line_and_column() -> None:
    files = sample_files()
    files["profiles.yaml"] = files["profiles.yaml"].replace("- name: large-any", "- name: [large-any", 1)
    found = errors_of(files)
    assert len(found) == 1, found
    file, path, message = found[0]
    assert (
        file == "profiles.yaml"
        and message.startswith("invalid YAML")
        and path.startswith("line ")
        and "column " in path
    )


def test_a_profile_invalid_for_another_reason_is_not_also_unknown() -> None:
    profiles = (
        PROFILES + "- name: broken\n  accelerators: [{type: nvidia-a100-80gb}]\n  gpus: {default: many}\n"
    )
    found = errors_of(
        {
            "profiles.yaml": profiles,
            "settings.yaml": "defaultProfile: broken\n",
            "teams.yaml": "teams:\n- name: t\n  allowedProfiles: [broken]\n  defaultProfile: broken\n",
        }
    )
    assert [(f, p) for f, p, _ in found] == [("profiles.yaml", "profiles[2].gpus.default")], found


def test_errors_name_the_real_index_after_an_invalid_item() -> None:
    profiles = "profiles:\n- name: Bad Name\n- name: ok\n  accelerators: [{type: nvidia-a100-81gb}]\n"
    found = errors_of({"profiles.yaml": profiles})
    assert ("profiles.yaml", "profiles[1].accelerators[0].type") in [(f, p) for f, p, _ in found], found


def test_an_invalid_profile_still_gets_its_unknown_type_reported() -> None:
    profiles = "profiles:\n- name: p\n  accelerators: [{type: nvidia-a100-81gb}]\n  gpus: {max: 0}\n"
    paths = [p for _, p, _ in errors_of({"profiles.yaml": profiles})]
    assert paths == ["profiles[0].gpus.max", "profiles[0].accelerators[0].type"], paths


@pytest.mark.parametrize(
    ("files", "path", "hint"),
    [
        pytest.param(
            {"profiles.yaml": "profiles:\n- name: p\n  accelerators: [{type: nvidia-a100-80g}]\n"},
            "profiles[0].accelerators[0].type",
            "did you mean 'nvidia-a100-80gb'?",
            id="type-in-profile",
        ),
        pytest.param(
            {"teams.yaml": "teams:\n- name: t\n  quota: {nvidia-h100-80bg: 1}\n"},
            "teams[0].quota.nvidia-h100-80bg",
            "did you mean 'nvidia-h100-80gb'?",
            id="type-in-quota",
        ),
        pytest.param(
            {"profiles.yaml": PROFILES, "teams.yaml": "teams:\n- name: t\n  allowedProfiles: [large-anyy]\n"},
            "teams[0].allowedProfiles[0]",
            "did you mean 'large-any'?",
            id="profile-in-team",
        ),
        pytest.param(
            {"profiles.yaml": PROFILES, "settings.yaml": "defaultProfile: bgi\n"},
            "defaultProfile",
            "did you mean 'big'?",
            id="default-profile",
        ),
    ],
)
def test_did_you_mean(files: dict[str, str], path: str, hint: str) -> None:
    found = errors_of(files)
    assert [p for _, p, _ in found] == [path]
    assert hint in found[0][2], found


def test_no_hint_when_nothing_is_close() -> None:
    message = errors_of(
        {"profiles.yaml": PROFILES, "teams.yaml": "teams:\n- name: t\n  allowedProfiles: [zzz]\n"}
    )[0][2]
    assert "did you mean" not in message and "known: big, large-any" in message


@pytest.mark.parametrize(
    ("profile", "words"),
    [
        pytest.param(
            "accelerators: [{type: nvidia-a100-80gb}, {type: amd-mi300x-192gb}]",
            [
                "mixes accelerator resources nvidia.com/gpu (nvidia-a100-80gb), amd.com/gpu "
                "(amd-mi300x-192gb)",
                "one profile per vendor",
            ],
            id="mixed-vendor-refused",
        ),
        pytest.param(
            "accelerators: [{type: amd-mi300x-192gb}]\n  sharing: time-sliced\n  replicas: 2",
            ["'nvidia.com/gpu.shared' is not a resource of amd.com/gpu devices"],
            id="shared-name-of-other-vendor",
        ),
    ],
)
def test_profile_resource_rules(profile: str, words: list[str]) -> None:
    found = errors_of({"profiles.yaml": f"profiles:\n- name: p\n  {profile}\n"})
    assert len(found) == 1, found
    for word in words:
        assert word in found[0][2], found


def test_time_sliced_without_rename_is_a_valid_profile() -> None:
    text = (
        "profiles:\n- name: ts\n  accelerators: [{type: nvidia-l4-24gb}]\n  sharing: time-sliced\n"
        "  replicas: 4\n  sharedResourceName: nvidia.com/gpu\n"
    )
    assert (
        parse_policy({"profiles.yaml": text}, load_builtin_catalog()).policy.profiles[0].shared_resource_name
        == "nvidia.com/gpu"
    )


def test_every_error_is_reported_exactly_once() -> None:
    files = {
        "settings.yaml": "defaultProfile: nope\nmode: yolo\n",
        "profiles.yaml": PROFILES
        + "- name: m\n  accelerators: [{type: nvidia-a100-80gb}, {type: amd-mi300x-192gb}]\n",
        "teams.yaml": "teams:\n- name: t\n  quota: {x: -1}\n  allowedProfiles: [nope, big]\n  allowedTypes: "
        "[nvidia-l4]\n",
    }
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(files, load_builtin_catalog())
    keys = [(e.file, e.path) for e in caught.value.errors]
    assert len(keys) == len(set(keys)), keys
    assert set(keys) >= {
        ("settings.yaml", "mode"),
        ("settings.yaml", "defaultProfile"),
        ("profiles.yaml", "profiles[2].accelerators"),
        ("teams.yaml", "teams[0].allowedProfiles[0]"),
        ("teams.yaml", "teams[0].allowedTypes[0]"),
    }


def test_cli_prints_the_one_syntax_error_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, text in sample_files().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "profiles.yaml").write_text("profiles:\n- name: [oops\n")
    assert main(["policy", "validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "1 error(s)" in err and "profiles.yaml: line 3, column" in err and "Traceback" not in err, err


def test_a_renamed_team_loses_its_old_quota_series() -> None:
    from serving.cluster_state import ClusterState
    from serving.metrics import Metrics
    from tests.builders import example_policy, make_inventory
    from webhook.app import ADMITTER, make_app

    teams = [{"name": "nlp", "quota": {"nvidia-a100-80gb": 4, "*": 8}}]
    state = ClusterState.static(example_policy(teams=teams), make_inventory())
    metrics = Metrics()
    admitter = make_app(state, metrics=metrics, ledger_store=None, replica_id="t")[ADMITTER]
    admitter.context()
    before = metrics.render().decode()
    assert 'accel_quota_used_gpus{team="nlp",type="nvidia-a100-80gb"}' in before
    state.update_static(parsed=example_policy(teams=[{**teams[0], "name": "language"}]))
    admitter.context()
    after = metrics.render().decode()
    assert not [
        line for line in after.splitlines() if line.startswith("accel_quota_") and 'team="nlp"' in line
    ], after
    assert 'accel_quota_used_gpus{team="language",type="nvidia-a100-80gb"} 0.0' in after
    assert 'accel_quota_limit_gpus{team="language",type="*"} 8.0' in after
