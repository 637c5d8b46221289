"""Policy parsing: the sample is valid; every kind of mistake is reported with file and path."""

from __future__ import annotations

from pathlib import Path

import pytest

from accel.cluster.catalog import load_builtin_catalog
from accel.policy.loading import parse_policy
from accel.policy.models import Mode, PolicyInvalid

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "policy"


def sample_files() -> dict[str, str]:
    return {p.name: p.read_text() for p in SAMPLE.glob("*.yaml")}


def errors_of(files: dict[str, str]) -> list[tuple[str, str, str]]:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(files, load_builtin_catalog())
    return [(e.file, e.path, e.message) for e in caught.value.errors]


def test_sample_policy_is_valid() -> None:
    parsed = parse_policy(sample_files(), load_builtin_catalog())
    policy = parsed.policy
    assert policy.settings.mode is Mode.ENFORCE
    assert "kube-system" in policy.settings.excluded_namespaces
    assert policy.profile("large-any").types == ("nvidia-h200-141gb", "nvidia-h100-80gb", "nvidia-a100-80gb")
    assert policy.team("nlp").quota["*"] == 40


def test_empty_policy_is_valid_with_defaults() -> None:
    assert parse_policy({}, load_builtin_catalog()).policy.settings.team_label == "team"


PROFILE = "profiles:\n- name: p\n  accelerators: [{type: nvidia-a100-80gb}]\n"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"profiles.yaml": "profiles:\n- name: p\n  accelerators: [{type: nvidia-a100-81gb}]\n"},
            (
                "profiles.yaml",
                "profiles[0].accelerators[0].type",
                "unknown accelerator type 'nvidia-a100-81gb'",
            ),
        ),
        (
            {"profiles.yaml": PROFILE + "- name: p\n"},
            ("profiles.yaml", "profiles[1].name", "duplicate name 'p'"),
        ),
        (
            {"profiles.yaml": PROFILE, "teams.yaml": "teams:\n- name: t\n  quota: {nvidia-a100-80gb: -2}\n"},
            ("teams.yaml", "teams[0].quota", "non-negative"),
        ),
        (
            {
                "profiles.yaml": PROFILE,
                "teams.yaml": "teams:\n- name: t\n  quota: {nvidia-a100-80gb: lots}\n",
            },
            ("teams.yaml", "teams[0].quota", ""),
        ),
        (
            {"profiles.yaml": PROFILE, "teams.yaml": "teams:\n- name: t\n  allowedProfiles: [nope]\n"},
            ("teams.yaml", "teams[0].allowedProfiles[0]", "unknown profile 'nope'"),
        ),
        (
            {
                "profiles.yaml": "profiles:\n- name: m\n  accelerators: [{type: nvidia-a100-80gb}]\n  "
                "sharing: mig\n  migProfile: 1g.5gb\n"
            },
            (
                "profiles.yaml",
                "profiles[0].accelerators[0].type",
                "MIG profile 1g.5gb is not valid for nvidia-a100-80gb",
            ),
        ),
        (
            {
                "profiles.yaml": "profiles:\n- name: m\n  accelerators: [{type: nvidia-l4-24gb}]\n  "
                "sharing: mig\n  migProfile: 1g.10gb\n"
            },
            ("profiles.yaml", "profiles[0].accelerators[0].type", "not valid for nvidia-l4-24gb"),
        ),
        (
            {
                "profiles.yaml": "profiles:\n- name: e\n  accelerators: [{type: nvidia-a100-80gb}]\n  "
                "sharing: exclusive\n  migProfile: 1g.10gb\n"
            },
            ("profiles.yaml", "profiles[0].migProfile", "sharing is 'exclusive'"),
        ),
        (
            {
                "profiles.yaml": "profiles:\n- name: e\n  accelerators: [{type: nvidia-a100-80gb}]\n  "
                "sharing: mig\n"
            },
            ("profiles.yaml", "profiles[0].migProfile", "required when sharing is mig"),
        ),
        ({"settings.yaml": "mode: yolo\n"}, ("settings.yaml", "mode", "")),
        (
            {"settings.yaml": "defaultProfile: ghost\n"},
            ("settings.yaml", "defaultProfile", "unknown profile 'ghost'"),
        ),
        ({"settings.yaml": "mode: [unclosed\n"}, ("settings.yaml", "line", "invalid YAML")),
        ({"settings.yaml": "teamLable: team\n"}, ("settings.yaml", "teamLable", "unknown field")),
        (
            {"profiles.yaml": "profiles:\n- name: g\n  gpus: {default: 4, max: 2}\n"},
            ("profiles.yaml", "profiles[0].gpus.default", "above max"),
        ),
        ({"teams.yaml": "teams: {a: 1}\n"}, ("teams.yaml", "teams", "expected a mapping with a list")),
        ({"extra.yaml": "x: 1\n"}, ("extra.yaml", "", "unknown policy key")),
    ],
    ids=[
        "unknown-type",
        "duplicate-profile",
        "negative-quota",
        "non-numeric-quota",
        "unknown-allowed-profile",
        "mig-profile-wrong-size",
        "mig-on-non-mig-type",
        "exclusive-with-mig-profile",
        "mig-without-profile",
        "bad-mode",
        "unknown-default-profile",
        "yaml-syntax",
        "misspelled-field",
        "default-above-max",
        "teams-not-a-list",
        "unknown-file",
    ],
)
def test_broken_policy_names_file_path_and_reason(
    files: dict[str, str], expected: tuple[str, str, str]
) -> None:
    found = errors_of(files)
    file, path, message = expected
    assert any(f == file and p.startswith(path) and message in m for f, p, m in found), found


def test_all_errors_are_reported_at_once() -> None:
    found = errors_of({
        "settings.yaml": "mode: yolo\n",
        "profiles.yaml": "profiles:\n- name: a\n  accelerators: [{type: nope-x-1gb}]\n",
        "teams.yaml": "teams:\n- name: t\n  quota: {ghost-gpu-8gb: 1}\n",
    })
    assert {f for f, _, _ in found} == {"settings.yaml", "profiles.yaml", "teams.yaml"}


def test_policy_can_add_a_new_accelerator_type_without_a_release() -> None:
    files = {
        "accelerators.yaml": "accelerators:\n- name: nvidia-b300-288gb\n  displayName: NVIDIA B300 288GB\n  "
        "vendor: nvidia\n  model: B300\n  memoryGB: 288\n  productLabels: [NVIDIA-B300]\n",
        "profiles.yaml": "profiles:\n- name: b300\n  accelerators: [{type: nvidia-b300-288gb}]\n",
    }
    parsed = parse_policy(files, load_builtin_catalog())
    assert parsed.catalog.display_name("nvidia-b300-288gb") == "NVIDIA B300 288GB"
