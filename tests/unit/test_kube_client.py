"""ApiClientFactory: configuration order and the no-cluster error message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kube.client import NO_CLUSTER_MESSAGE, ApiClientFactory, NoClusterError


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "secret-token"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    return path


def _in_cluster_files(tmp: Path) -> dict[str, str]:
    (tmp / "token").write_text("sa-token")
    (tmp / "ca.crt").write_text("ca")
    return {"token_file": str(tmp / "token"), "ca_file": str(tmp / "ca.crt")}


async def test_no_cluster_error_says_how_to_run_without_one(tmp_path: Path) -> None:
    factory = ApiClientFactory(environ={}, home=tmp_path)
    with pytest.raises(NoClusterError) as caught:
        await factory.configuration()
    assert str(caught.value).startswith(NO_CLUSTER_MESSAGE)
    assert "KUBERNETES_SERVICE_HOST is not set" in str(caught.value)
    assert str(tmp_path / ".kube" / "config") in str(caught.value)


@pytest.mark.parametrize(("explicit", "in_cluster", "env", "home", "expected_host"), [
    pytest.param(True, True, True, True, "https://explicit:6443", id="explicit-path-first"),
    pytest.param(False, True, True, True, "https://10.0.0.1:443", id="in-cluster-before-kubeconfig"),
    pytest.param(False, False, True, True, "https://env:6443", id="KUBECONFIG-before-home"),
    pytest.param(False, False, False, True, "https://home:6443", id="home-kube-config-last"),
])
async def test_configuration_order(tmp_path: Path, explicit: bool, in_cluster: bool, env: bool, home: bool,
                                   expected_host: str) -> None:
    environ: dict[str, str] = {}
    if in_cluster:
        environ |= {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    if env:
        environ["KUBECONFIG"] = str(_kubeconfig(tmp_path / "env.yaml", "https://env:6443"))
    if home:
        (tmp_path / ".kube").mkdir()
        _kubeconfig(tmp_path / ".kube" / "config", "https://home:6443")
    path = str(_kubeconfig(tmp_path / "explicit.yaml", "https://explicit:6443")) if explicit else None
    factory = ApiClientFactory(path, environ=environ, home=tmp_path, **_in_cluster_files(tmp_path))
    assert (await factory.configuration()).host == expected_host


async def test_create_builds_a_client_on_the_resolved_configuration(tmp_path: Path) -> None:
    factory = ApiClientFactory(str(_kubeconfig(tmp_path / "k.yaml", "https://k:6443")), environ={})
    client = await factory.create()
    assert (
        client.configuration.host == "https://k:6443"
        and factory.source == f"kubeconfig {tmp_path / 'k.yaml'}"
    )
    await client.close()


async def test_explicit_kubeconfig_that_fails_does_not_fall_back(tmp_path: Path) -> None:
    _kubeconfig(tmp_path / "good.yaml", "https://env:6443")
    factory = ApiClientFactory(
        str(tmp_path / "missing.yaml"), environ={"KUBECONFIG": str(tmp_path / "good.yaml")}
    )
    with pytest.raises(NoClusterError, match=r"missing\.yaml"):
        await factory.configuration()


async def test_broken_in_cluster_falls_through_to_kubeconfig_and_is_reported(tmp_path: Path) -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443",
               "KUBECONFIG": str(tmp_path / "absent.yaml")}
    factory = ApiClientFactory(environ=environ, home=tmp_path, token_file=str(tmp_path / "no-token"),
                               ca_file=str(tmp_path / "no-ca"))
    with pytest.raises(NoClusterError) as caught:
        await factory.configuration()
    assert "in-cluster service account:" in str(caught.value) and "absent.yaml" in str(caught.value)


async def test_the_session_never_reads_the_environment_per_request(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohttp's trust_env would look up ~/.netrc and the proxy variables in a worker thread on every
    call (kube.client `_settle_environment`); the client's connector (its TLS settings) is kept."""
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    factory = ApiClientFactory(str(_kubeconfig(tmp_path / "k.yaml", "https://k:6443")), environ={})
    client = await factory.create()
    try:
        session = client.rest_client.pool_manager
        assert session.trust_env is False and not session.closed and not session.connector.closed
        assert session.connector._ssl is not None  # kubernetes_asyncio's context (CA, client cert)
        assert client.rest_client.proxy is None
    finally:
        await client.close()


@pytest.mark.parametrize(("no_proxy", "expected"), [
    pytest.param("", "http://proxy.corp:3128", id="proxied"),
    pytest.param("k,.svc", None, id="NO_PROXY-covers-the-api-server"),
])
async def test_the_environment_proxy_is_resolved_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      no_proxy: str, expected: str | None) -> None:
    for name in ("https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://alice:secret@proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    factory = ApiClientFactory(str(_kubeconfig(tmp_path / "k.yaml", "https://k:6443")), environ={})
    client = await factory.create()
    try:
        rest = client.rest_client
        assert rest.proxy == expected
        if expected is not None:  # the proxy URL's credentials, as aiohttp would send them
            assert rest.proxy_headers["Proxy-Authorization"] == "Basic YWxpY2U6c2VjcmV0"
    finally:
        await client.close()
