"""`ApiClientFactory`: find cluster credentials and build a kubernetes_asyncio `ApiClient`.

Order (design.md "Contract: commands"):
1. an explicit kubeconfig path (`--kubeconfig`): if given it must work — no silent fallback;
2. the in-cluster service account (`KUBERNETES_SERVICE_HOST` + the mounted token and CA);
3. `KUBECONFIG` (a `:`-separated list is merged, as kubectl does), else `~/.kube/config`.
When nothing works the error says how to run without a cluster. The environment and the home
directory are injectable so tests never depend on the machine they run on.

The client's HTTP session does not consult the environment per request (`_settle_environment`):
kubernetes_asyncio creates it with aiohttp's `trust_env=True`, which looks up ~/.netrc and the proxy
variables for every call, each in a worker thread. The proxy (HTTPS_PROXY / NO_PROXY, aiohttp's own
rules) is resolved once instead, when the client is built.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.rest import RESTClientObject
from kubernetes_asyncio.config import ConfigException, load_kube_config
from kubernetes_asyncio.config.incluster_config import (
    SERVICE_CERT_FILENAME,
    SERVICE_TOKEN_FILENAME,
    InClusterConfigLoader,
)
from yarl import URL

from kube.errors import KubeError

NO_CLUSTER_MESSAGE = "no cluster found"
# One hint, said once: `--policy` alone does not replace a cluster (nodes and pods come from it).
NO_CLUSTER_HINT = (
    "to work without a cluster pass --snapshot FILE (e.g. examples/cluster.yaml); "
    "to reach one pass --kubeconfig FILE or set KUBECONFIG"
)


class NoClusterError(KubeError):
    """No way to reach a cluster was found; `attempts` lists what was tried and why it failed."""

    def __init__(self, attempts: list[str]) -> None:
        detail = "; ".join(attempts) if attempts else "nothing to try"
        super().__init__(f"{NO_CLUSTER_MESSAGE} (tried: {detail}); {NO_CLUSTER_HINT}")
        self.attempts = attempts


READ_BUFSIZE = 2**21  # kubernetes_asyncio's own: one watch line holds a whole object (etcd allows ~1.5 MiB)


def _settle_environment(rest: RESTClientObject, host: str | None) -> None:
    """Give `rest` a session that never looks at the environment per request (module docstring).

    With `trust_env=True` every request of aiohttp's session first reads ~/.netrc and then the proxy
    variables, each in the default thread pool: two thread hand-offs per API call, in every server
    process (the webhook writes the quota ledger through here; on a busy event loop each hand-off
    waits for the GIL). Same answer, computed once: the proxy aiohttp would pick for `host` (none
    when NO_PROXY covers it), credentials in the proxy URL sent as Proxy-Authorization. netrc
    credentials are not a Kubernetes authentication method and are not looked up. A proxy set in
    the kubeconfig (`proxy-url`) stays as it is."""
    if not rest.proxy and host:
        with contextlib.suppress(LookupError):  # no proxy for this host
            proxy, auth = get_env_proxy_for_url(URL(host))
            rest.proxy = str(proxy)
            if auth is not None:
                rest.proxy_headers = {**(rest.proxy_headers or {}), "Proxy-Authorization": auth.encode()}
    old = rest.pool_manager
    connector = old.connector
    old.detach()  # the new session owns the connector (and its TLS settings); the old one holds nothing
    rest.pool_manager = aiohttp.ClientSession(connector=connector, trust_env=False, read_bufsize=READ_BUFSIZE)


class ApiClientFactory:
    """Builds `ApiClient`s for one resolved configuration (resolved once, on first use)."""

    def __init__(
        self,
        kubeconfig: str | None = None,
        *,
        context: str | None = None,
        environ: Mapping[str, str] | None = None,
        home: Path | None = None,
        token_file: str = SERVICE_TOKEN_FILENAME,
        ca_file: str = SERVICE_CERT_FILENAME,
    ) -> None:
        self._kubeconfig = kubeconfig
        self._context = context
        self._environ = dict(os.environ if environ is None else environ)
        self._home = home if home is not None else Path.home()
        self._token_file = token_file
        self._ca_file = ca_file
        self._configuration: Configuration | None = None
        self.source: str | None = None  # where the configuration came from, for logs

    async def configuration(self) -> Configuration:
        """Resolve (once) and return the client configuration; raise `NoClusterError` if none works."""
        if self._configuration is None:
            self._configuration, self.source = await self._resolve()
        return self._configuration

    async def create(self) -> ApiClient:
        """A new `ApiClient`; the caller closes it (`async with` or `await client.close()`)."""
        configuration = await self.configuration()
        client = ApiClient(configuration=configuration)
        _settle_environment(client.rest_client, configuration.host)
        return client

    async def _resolve(self) -> tuple[Configuration, str]:
        if self._kubeconfig is not None:
            try:
                return await self._from_kubeconfig(self._kubeconfig), f"kubeconfig {self._kubeconfig}"
            except (ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
                raise NoClusterError([f"kubeconfig {self._kubeconfig}: {exc}"]) from exc
        attempts: list[str] = []
        if self._environ.get("KUBERNETES_SERVICE_HOST"):
            try:
                return self._in_cluster(), "in-cluster service account"
            except (ConfigException, OSError) as exc:
                attempts.append(f"in-cluster service account: {exc}")
        else:
            attempts.append("in-cluster service account: KUBERNETES_SERVICE_HOST is not set")
        env_path = self._environ.get("KUBECONFIG")
        path = env_path or str(self._home / ".kube" / "config")
        label = f"KUBECONFIG={env_path}" if env_path else f"{path}"
        if not env_path and not Path(path).exists():
            attempts.append(f"{path}: does not exist")
            raise NoClusterError(attempts)
        try:
            return await self._from_kubeconfig(path), label
        except (ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
            attempts.append(f"{label}: {exc}")
        raise NoClusterError(attempts)

    async def _from_kubeconfig(self, path: str) -> Configuration:
        for part in path.split(os.pathsep):
            if part and not Path(part).expanduser().exists():
                raise ConfigException(f"file {part} does not exist")
        configuration = Configuration()
        await load_kube_config(config_file=path, context=self._context, client_configuration=configuration,
                               persist_config=False)
        return configuration

    def _in_cluster(self) -> Configuration:
        configuration = Configuration()
        loader = InClusterConfigLoader(token_filename=self._token_file, cert_filename=self._ca_file,
                                       environ=self._environ)
        loader.load_and_set(configuration)
        return configuration
