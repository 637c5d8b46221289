"""What a new user sees from the real `accel` console script: no tracebacks, messages that say
what to do (issue 18). Each test runs `.venv/bin/accel` (the installed entry point) as a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = str(ROOT / "examples" / "cluster.yaml")
POLICY = ROOT / "examples" / "policy"
ACCEL = Path(sys.executable).with_name("accel")
SAMPLE = ["--snapshot", SNAPSHOT, "--policy", str(POLICY)]


def accel(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    assert ACCEL.is_file(), f"{ACCEL} missing: install the project (make .venv/.installed)"
    return subprocess.run(
        [str(ACCEL), *argv], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr


@contextlib.contextmanager
def served_api(*argv: str, log: Path) -> Iterator[str]:
    """`accel serve api --insecure-plaintext --port 0 ...` until the block ends; yields its base URL."""
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [str(ACCEL), "serve", "api", "--host", "127.0.0.1", "--port", "0", "--insecure-plaintext", *argv],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
            ready = [r for r in records if r.get("message") == "ready"]
            port = next((r["port"] for r in records if r.get("message") == "serving"), None)
            if ready and port:
                break
            assert proc.poll() is None, f"server exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"server not ready in 30 s: {log.read_text()}"
            time.sleep(0.05)  # polling the log file for the ready line, with the deadline above
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# --- files in other encodings ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "bom"), [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"), ("utf-8", b"\xef\xbb\xbf")]
)
def test_snapshot_and_policy_in_utf16_or_with_a_bom_are_read(
    tmp_path: Path, encoding: str, bom: bytes
) -> None:
    """What PowerShell's `>` writes (UTF-16 LE with a BOM) reads like the UTF-8 original."""
    snapshot = tmp_path / "cluster.yaml"
    snapshot.write_bytes(bom + Path(SNAPSHOT).read_text(encoding="utf-8").encode(encoding))
    policy = tmp_path / "policy"
    policy.mkdir()
    for f in POLICY.glob("*.yaml"):
        (policy / f.name).write_bytes(bom + f.read_text(encoding="utf-8").encode(encoding))
    expected = accel("nodes", *SAMPLE, "-o", "json")
    result = accel("nodes", "--snapshot", str(snapshot), "--policy", str(policy), "-o", "json")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected.stdout
    validated = accel("policy", "validate", str(policy))
    assert validated.returncode == 0 and "valid (8 profiles" in validated.stdout


def test_binary_snapshot_and_policy_are_clear_errors(tmp_path: Path) -> None:
    binary = tmp_path / "cluster.tar.gz"
    binary.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xfe")
    result = accel("nodes", "--snapshot", str(binary), "--policy", str(POLICY))
    no_traceback(result)
    assert result.returncode == 1
    assert f"{binary}: is a binary file" in result.stderr and "kubectl get" in result.stderr
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "teams.yaml").write_bytes("teams:\n- name: caf\xe9\n".encode("latin-1"))
    for command in (
        ["policy", "validate", str(policy)],
        ["nodes", "--snapshot", SNAPSHOT, "--policy", str(policy)],
    ):
        result = accel(*command)
        no_traceback(result)
        assert result.returncode == 1
        assert "teams.yaml: byte 18 (0xe9) is not UTF-8" in result.stderr and "iconv" in result.stderr


def test_server_with_a_binary_snapshot_says_so_and_exits(tmp_path: Path) -> None:
    binary = tmp_path / "cluster.yaml"
    binary.write_bytes(b"\x00\x01\x02binary")
    result = accel(
        "serve",
        "api",
        "--insecure-plaintext",
        "--port",
        "0",
        "--snapshot",
        str(binary),
        "--policy",
        str(POLICY),
    )
    no_traceback(result)
    assert result.returncode == 1 and "is a binary file" in result.stderr


# --- closed pipes ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["nodes", *SAMPLE, "-o", "yaml"],
    ["profiles", *SAMPLE],
    ["policy", "validate", str(POLICY)],
    ["estimate", *SAMPLE, "--model", "llama-3-8b", "--tokens", "1e11"],
    ["--help"],
], ids=lambda c: c[0])
def test_a_closed_pipe_ends_the_command_quietly(command: list[str]) -> None:
    """`accel ... | head -1`: the reader is gone before the command writes."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the first write fails with EPIPE
    try:
        proc = subprocess.run(
            [str(ACCEL), *command], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, cwd=ROOT
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    # 141: what a shell reports for a command ended by SIGPIPE; argparse's --help ignores the error
    assert proc.returncode == (0 if command == ["--help"] else 141)


# --- messages in the CLI's language -------------------------------------------------------


def test_no_cluster_hint_names_snapshot_once_and_not_policy(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env["HOME"] = str(tmp_path)
    result = accel("nodes", "--policy", str(POLICY), env=env)
    no_traceback(result)
    assert result.returncode == 1
    assert result.stderr.count("--snapshot") == 1 and "--policy" not in result.stderr
    assert "examples/cluster.yaml" in result.stderr and "KUBECONFIG" in result.stderr


def test_serving_without_certificates_says_which_commands_to_run() -> None:
    result = accel("serve", "api", "--port", "0", *SAMPLE)
    no_traceback(result)
    assert result.returncode == 1
    assert "allow_plaintext" not in result.stderr
    assert "accel certs create --local --service accel-api --out-dir DIR" in result.stderr
    assert "--cert-dir DIR" in result.stderr and "--insecure-plaintext" in result.stderr


def test_serving_an_invalid_policy_dir_fails_at_start_with_its_errors(tmp_path: Path) -> None:
    (tmp_path / "teams.yaml").write_text("teams:\n- name: x\n  quota: {nope-gpu-1gb: 1}\n", encoding="utf-8")
    result = accel(
        "serve",
        "api",
        "--insecure-plaintext",
        "--port",
        "0",
        "--snapshot",
        SNAPSHOT,
        "--policy",
        str(tmp_path),
    )
    no_traceback(result)
    assert result.returncode == 1
    assert f"policy {tmp_path} is invalid (1 error(s))" in result.stderr and "nope-gpu-1gb" in result.stderr
    assert "keeping the policy in force" not in result.stderr and "ready()" not in result.stderr


def test_unknown_log_level_is_a_usage_error() -> None:
    result = accel("serve", "api", "--log-level", "loud", *SAMPLE)
    no_traceback(result)
    assert result.returncode == 2 and "--log-level" in result.stderr and "DEBUG" in result.stderr


# --- node view ----------------------------------------------------------------------------

BAD_CAPACITY = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata: {name: gpu-bad-1, labels: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}}
  status: {capacity: {nvidia.com/gpu: "abc"}, allocatable: {nvidia.com/gpu: "-8"}}
- apiVersion: v1
  kind: Node
  metadata: {name: gpu-ok-1, labels: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}}
  status: {capacity: {nvidia.com/gpu: "0"}, allocatable: {nvidia.com/gpu: "0"}}
"""


def test_unreadable_gpu_capacities_are_warned_about(tmp_path: Path) -> None:
    snapshot = tmp_path / "bad.yaml"
    snapshot.write_text(BAD_CAPACITY, encoding="utf-8")
    result = accel("nodes", "--snapshot", str(snapshot), "--policy", str(POLICY))
    assert result.returncode == 0 and "gpu-bad-1" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        "accel: warning: node gpu-bad-1: status.capacity[nvidia.com/gpu] is 'abc', not a whole non-negative "
        "number of devices; read as 0",
        "accel: warning: node gpu-bad-1: status.allocatable[nvidia.com/gpu] is '-8', not a whole "
        "non-negative number of devices; read as 0",
    ]  # and none for gpu-ok-1, whose "0" is a real zero


def test_unreadable_gpu_capacities_are_warned_about_by_the_api_and_in_its_log(tmp_path: Path) -> None:
    snapshot = tmp_path / "bad.yaml"
    snapshot.write_text(BAD_CAPACITY, encoding="utf-8")
    log = tmp_path / "api.log"
    with served_api("--snapshot", str(snapshot), "--policy", str(POLICY), log=log) as base:
        status, body = get(base + "/api/nodes")
        assert status == 200
        warned = {n["name"]: n["warnings"] for n in body["nodes"]}
        assert (
            warned["gpu-bad-1"][0].startswith("status.capacity[nvidia.com/gpu] is 'abc'")
            and warned["gpu-ok-1"] == []
        )
        status, body = get(base + "/api/nodes?type=bogus")
        assert (
            status == 400
            and "unknown accelerator type 'bogus'" in body["error"]
            and "nvidia-h100-80gb" in body["error"]
        )
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    logged = [
        (r["node"], r["problem"].split(",")[0])
        for r in records
        if r.get("message") == "node status value unreadable"
    ]
    assert sorted(logged) == [
        ("gpu-bad-1", "status.allocatable[nvidia.com/gpu] is '-8'"),
        ("gpu-bad-1", "status.capacity[nvidia.com/gpu] is 'abc'"),
    ]
    startup = [
        r["message"] for r in records if r.get("logger") != "accel.audit.policy" and r["level"] == "info"
    ][:3]
    assert startup == ["policy loaded", "serving", "ready"]  # a summary, not the policy
    assert not any("collector" in r["message"] or "diff" in r for r in records)


def test_unknown_type_suggests_the_closest_instead_of_the_catalog() -> None:
    result = accel("nodes", *SAMPLE, "--type", "nvidia-h10-80gb")
    no_traceback(result)
    assert result.returncode == 1
    assert "did you mean nvidia-h100-80gb" in result.stderr
    assert "intel-gaudi" not in result.stderr  # not the whole catalog


def test_help_texts_say_what_each_argument_is() -> None:
    serve = accel("serve", "--help").stdout
    assert "TCP port to listen on" in serve and "log level" in serve and "which server" in serve
    validate = accel("policy", "validate", "--help").stdout
    assert "settings.yaml" in validate and "ConfigMap" in validate
    simulate = accel("simulate", "--help").stdout
    assert "(default: default)" in simulate and "default: all of" in simulate


# --- estimates ------------------------------------------------------------------------------


def test_estimate_sizes_each_profile_to_the_fewest_gpus_that_fit() -> None:
    """The README example ranks real options instead of listing every profile as "does not fit"."""
    result = accel("estimate", "--model", "llama-3-8b", "--tokens", "2e9", *SAMPLE, "-o", "json")
    assert result.returncode == 0, result.stderr
    rows = {e["profile"]: e for e in json.loads(result.stdout)["estimates"]}
    # 8.03e9 params x (2 + 2 + 12) B x 1.2 = 154 GB over units of 0.9 x memory
    assert {p: rows[p]["gpus"] for p in ("large-any", "amd-mi300x", "a100-80gb")} == {
        "large-any": 2,
        "amd-mi300x": 1,
        "a100-80gb": 3,
    }
    assert all(
        rows[p]["fits"] and rows[p]["rank"] and rows[p]["gpusSizedToFit"]
        for p in ("large-any", "amd-mi300x", "a100-80gb")
    )
    assert rows["large-any"]["hours"] < 100  # not the 82,620 h of one pod-default GPU
    table = accel("estimate", "--model", "llama-3-8b", "--tokens", "2e9", *SAMPLE)
    assert "does not fit" not in table.stdout and "the fewest that hold the model" in table.stdout
    assert table.stderr == ""


def test_estimate_warns_when_gpus_exceed_a_profiles_per_pod_max() -> None:
    result = accel("estimate", "--model", "llama-3-8b", "--tokens", "2e9", "--gpus", "16", *SAMPLE)
    assert result.returncode == 0
    assert (
        "accel: warning: --gpus 16 is over the per-pod maximum of" in result.stderr
        and "a100-80gb (8)" in result.stderr
    )
    assert "over the profile's max of 8 GPUs per pod: 2 pods" in result.stdout


# --- the local web page as a team -----------------------------------------------------------


def test_dev_identity_lets_the_local_page_show_a_teams_view(tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    with served_api(*SAMPLE, "--dev-identity", "team:nlp", log=log) as base:
        status, who = get(base + "/api/whoami")
        assert status == 200 and who["teams"] == ["nlp"] and who["devIdentity"] is True
        assert len(get(base + "/api/hardware-profiles")[1]["profiles"]) == 6  # anonymous sees 2
    assert (
        "accel: development identity: callers without a token are treated as team:nlp (local use only)"
        in log.read_text()
    )


@pytest.mark.parametrize("argv", [
    ["serve", "api", "--insecure-plaintext", "--policy", str(POLICY)],  # a cluster, not a snapshot
    ["serve", "extender", "--insecure-plaintext", "--allow-unauthenticated", *SAMPLE],
], ids=["api-on-a-cluster", "extender"])
def test_dev_identity_is_refused_outside_a_local_snapshot_api(argv: list[str]) -> None:
    result = accel(*argv, "--dev-identity", "team:nlp")
    no_traceback(result)
    assert (
        result.returncode == 1
        and "--dev-identity is for local use of `accel serve api --snapshot FILE` only" in result.stderr
    )


# --- README quickstart --------------------------------------------------------------------


def quickstart_commands() -> list[list[str]]:
    """The `.venv/bin/accel` lines of README's quickstart block, as argv lists."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- quickstart:", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split()[1:] for line in block.splitlines() if line.startswith(".venv/bin/accel ")]


def test_readme_quickstart_shows_nodes_a_useful_estimate_and_the_page_as_a_team(tmp_path: Path) -> None:
    commands = quickstart_commands()
    assert [c[0] for c in commands] == ["nodes", "estimate", "profiles", "policy", "serve"]
    outputs = {}
    for argv in commands[:-1]:
        result = accel(*argv)
        no_traceback(result)
        assert result.returncode == 0, (argv, result.stderr)
        outputs[argv[0]] = result.stdout
    assert outputs["nodes"].startswith("NODE") and "NVIDIA H200 141GB" in outputs["nodes"]
    ranked = [line for line in outputs["estimate"].splitlines() if line[:1].isdigit()]
    assert len(ranked) >= 4 and "does not fit" not in outputs["estimate"]
    serve = commands[-1]
    port_at = serve.index("--port") + 1
    serve[port_at] = "0"  # any free port, not the README's 8080
    assert serve[:2] == ["serve", "api"] and "--dev-identity" in serve
    args = [a for a in serve[2:] if a not in ("--insecure-plaintext",)]
    host_at = args.index("--host")
    del args[host_at:host_at + 2]
    port_flag = args.index("--port")
    del args[port_flag:port_flag + 2]
    with served_api(*args, log=tmp_path / "api.log") as base:
        with urllib.request.urlopen(base + "/", timeout=10) as page:
            assert page.status == 200 and b'id="identity"' in page.read()
        assert get(base + "/api/whoami")[1]["teams"] == ["nlp"]
    assert "Traceback" not in (tmp_path / "api.log").read_text()


# --- profile discovery ------------------------------------------------------------------------


def test_discover_drafts_on_the_type_not_on_the_selected_nodes_leaf_and_product() -> None:
    result = accel("profiles", "discover", *SAMPLE, "--nodes", "gpu-h100-01,gpu-h100-02", "-o", "json")
    assert result.returncode == 0, result.stderr
    draft = json.loads(result.stdout)
    assert draft["profile"]["accelerators"] == [{"type": "nvidia-h100-80gb"}]
    assert "nodeSelector" not in draft["profile"]
    assert draft["alsoMatches"] == ["gpu-h100-03", "gpu-h100-04", "gpu-h100-05"]  # the other H100 nodes
    shared = draft["sharedLabels"]  # offered, not pinned
    assert shared["network.topology.nvidia.com/leaf"] == "leaf-2a" and "nvidia.com/gpu.product" not in shared


def test_discover_pins_only_what_the_selector_asked_for_minus_the_product_string() -> None:
    result = accel(
        "profiles",
        "discover",
        *SAMPLE,
        "-l",
        "topology.kubernetes.io/zone=eu-west-1a,nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3",
        "-o",
        "json",
    )
    assert result.returncode == 0, result.stderr
    profile = json.loads(result.stdout)["profile"]
    assert profile["nodeSelector"] == {"topology.kubernetes.io/zone": "eu-west-1a"}


def test_discover_names_a_mixed_draft_after_all_its_types(tmp_path: Path) -> None:
    result = accel("profiles", "discover", *SAMPLE, "--nodes", "gpu-h100-01,gpu-a100-01")
    assert result.returncode == 0, result.stderr
    profile = yaml.safe_load(result.stdout)["profiles"][0]
    assert profile["name"] == "nvidia-h100-80gb-a100-80gb"
    assert [a["type"] for a in profile["accelerators"]] == ["nvidia-h100-80gb", "nvidia-a100-80gb"]
    # the draft pastes into a valid policy
    policy = tmp_path / "policy"
    policy.mkdir()
    for f in POLICY.glob("*.yaml"):
        (policy / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    profiles = yaml.safe_load((policy / "profiles.yaml").read_text(encoding="utf-8"))
    profiles["profiles"].append(profile)
    (policy / "profiles.yaml").write_text(yaml.safe_dump(profiles), encoding="utf-8")
    assert accel("policy", "validate", str(policy)).returncode == 0


def test_profiles_type_column_shows_every_type_of_a_multi_type_profile_in_order() -> None:
    result = accel("profiles", *SAMPLE)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("large-any "))
    assert "nvidia-h200-141gb > nvidia-h100-80gb > nvidia-a100-80gb" in row
    single = next(line for line in result.stdout.splitlines() if line.startswith("premium-h200 "))
    assert single.split(None, 1)[1].startswith("NVIDIA H200 141GB ")  # one type: its display name
