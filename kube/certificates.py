"""The cluster side of certificates: Secrets and webhook configurations, behind two small Protocols.

`ensure_certificates(...)` is what `accel certs ensure` (the install Job and the daily CronJob) runs:
read both Secrets, let `CertificateRotator` decide, write, inject. Order matters and is fixed:
1. the CA Secret first, so a CA key is never lost after a certificate it signed is published;
2. then every webhook configuration's caBundle, so the API server trusts a new issuer before any
   pod can serve a certificate from it;
3. then the serving Secret (tls.crt, tls.key, ca.crt) that the servers mount and hot-reload;
4. then each client-certificate Secret (same three keys; kube-scheduler mounts
   `accel-scheduler-client` to call the extender), re-issued from the signing CA when due.
Every step is idempotent, so a run that fails half-way is completed by the next one. Writes use
the read resourceVersion as a precondition; a concurrent writer makes this run fail with `Conflict`
(the Job retries) rather than silently overwrite.

Implementations: `KubeSecretStore` / `KubeWebhookConfigStore` (REST via kubernetes_asyncio's
ApiClient) and `MemorySecretStore` / `MemoryWebhookConfigStore` (in-memory, for tests and demos).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import jsonpatch

from certs.inject import ca_bundle_patch
from certs.rotation import CertificateRotator, ClientSecret, RotationDecision
from certs.state import (
    CertState,
    ca_secret_manifest,
    ca_secret_name,
    serving_secret_manifest,
    state_from_secrets,
)
from kube.errors import ApiError, Conflict, NotFound, error_for_status
from kube.protocol import JsonObject
from kube.rest import RestTransport

log = logging.getLogger(__name__)

WebhookKind = Literal["mutating", "validating"]
WEBHOOK_PATHS: dict[WebhookKind, str] = {
    "mutating": "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
    "validating": "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
}


class SecretStore(Protocol):
    """Secrets of one namespace."""

    async def get(self, name: str) -> JsonObject | None:
        """The Secret, or None when it does not exist."""
        ...

    async def create(self, secret: JsonObject) -> JsonObject:
        """Create; `Conflict` if it exists."""
        ...

    async def replace(self, secret: JsonObject) -> JsonObject:
        """Replace; `metadata.resourceVersion` is the precondition (`Conflict` if it changed)."""
        ...


class WebhookConfigStore(Protocol):
    """Cluster-scoped Mutating/ValidatingWebhookConfigurations."""

    async def get(self, kind: WebhookKind, name: str) -> JsonObject:
        """The configuration; `NotFound` if absent."""
        ...

    async def patch(self, kind: WebhookKind, name: str, patch: list[JsonObject]) -> None:
        """Apply an RFC 6902 JSON patch."""
        ...


@dataclass(frozen=True)
class EnsureResult:
    """What a run did: the rotation decision, Secrets written, configurations patched."""

    decision: RotationDecision
    secrets_written: list[str] = field(default_factory=list)
    configs_patched: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.secrets_written or self.configs_patched)


def parse_webhook_ref(ref: str) -> tuple[WebhookKind | None, str]:
    """`mutating:NAME`, `validating:NAME`, or a bare NAME (kind looked up)."""
    prefix, sep, name = ref.partition(":")
    if sep and prefix in ("mutating", "validating"):
        return prefix, name  # type: ignore[return-value]
    return None, ref


async def _find_config(store: WebhookConfigStore, ref: str) -> list[tuple[WebhookKind, JsonObject]]:
    kind, name = parse_webhook_ref(ref)
    kinds: tuple[WebhookKind, ...] = (kind,) if kind else ("mutating", "validating")
    found: list[tuple[WebhookKind, JsonObject]] = []
    for candidate in kinds:
        try:
            found.append((candidate, await store.get(candidate, name)))
        except NotFound:
            continue
        except ApiError as exc:  # 403: RBAC grants only the kind this name really has
            if exc.status != 403 or kind:
                raise
    if not found:
        raise NotFound(
            f"no Mutating/ValidatingWebhookConfiguration named {name!r}; apply the manifests first"
        )
    return found


async def inject_ca_bundle(store: WebhookConfigStore, refs: Sequence[str], ca_bundle_pem: bytes) -> list[str]:
    """Set caBundle on every webhook of every named configuration; returns those actually patched."""
    patched: list[str] = []
    for ref in refs:
        for kind, config in await _find_config(store, ref):
            ops = ca_bundle_patch(config, ca_bundle_pem)
            if ops:
                name = config["metadata"]["name"]
                await store.patch(kind, name, ops)
                patched.append(f"{kind}:{name}")
    return patched


async def _write(store: SecretStore, desired: JsonObject, existing: JsonObject | None) -> None:
    if existing is None:
        await store.create(desired)
        return
    merged = copy.deepcopy(existing)
    merged["data"] = desired["data"]
    merged.setdefault("metadata", {}).setdefault("labels", {}).update(desired["metadata"]["labels"])
    await store.replace(merged)


async def ensure_certificates(
    *,
    secrets: SecretStore,
    webhooks: WebhookConfigStore,
    namespace: str,
    secret_name: str,
    webhook_configs: Sequence[str],
    rotator: CertificateRotator,
    clients: Sequence[ClientSecret] = (),
) -> EnsureResult:
    """Create or rotate the certificates in the cluster and inject the CA bundle (see module rules);
    then each client-certificate Secret in `clients` (certs/rotation.py rule 6)."""
    ca_name = ca_secret_name(secret_name)
    serving_secret, ca_secret = await secrets.get(secret_name), await secrets.get(ca_name)
    decision, state = rotator.rotate(state_from_secrets(serving_secret, ca_secret))
    written: list[str] = []
    for reason in decision.reasons:
        log.info("certificate rotation: %s", reason, extra={"secret": secret_name})
    if decision.changed:
        desired_ca = ca_secret_manifest(state, name=ca_name, namespace=namespace)
        if ca_secret is None or ca_secret.get("data") != desired_ca["data"]:
            await _write(secrets, desired_ca, ca_secret)
            written.append(ca_name)
    patched = await inject_ca_bundle(webhooks, webhook_configs, state.bundle)
    desired = serving_secret_manifest(state, name=secret_name, namespace=namespace)
    if serving_secret is None or serving_secret.get("data") != desired["data"]:
        await _write(secrets, desired, serving_secret)
        written.append(secret_name)
    assert state.ca is not None  # rotate() always leaves a signing CA
    for client in clients:
        existing = await secrets.get(client.secret)
        current = state_from_secrets(existing, None).serving
        why, pair = rotator.client(current, name=client.common_name, signer=state.ca)
        if why is not None:
            log.info("certificate rotation: %s", why, extra={"secret": client.secret})
        desired = serving_secret_manifest(
            CertState(bundle=state.bundle, serving=pair), name=client.secret, namespace=namespace
        )
        if existing is None or existing.get("data") != desired["data"]:
            await _write(secrets, desired, existing)
            written.append(client.secret)
    return EnsureResult(decision=decision, secrets_written=written, configs_patched=patched)


class KubeSecretStore:
    """`SecretStore` over the REST transport (verbs: get, create, update)."""

    def __init__(self, transport: RestTransport, namespace: str) -> None:
        self._rest = transport
        self._collection = f"/api/v1/namespaces/{namespace}/secrets"

    async def get(self, name: str) -> JsonObject | None:
        try:
            return await self._rest.request("GET", f"{self._collection}/{name}")
        except NotFound:
            return None

    async def create(self, secret: JsonObject) -> JsonObject:
        return await self._rest.request("POST", self._collection, body=secret)

    async def replace(self, secret: JsonObject) -> JsonObject:
        return await self._rest.request(
            "PUT", f"{self._collection}/{secret['metadata']['name']}", body=secret
        )


class KubeWebhookConfigStore:
    """`WebhookConfigStore` over the ApiClient (verbs: get, patch with application/json-patch+json)."""

    def __init__(self, transport: RestTransport) -> None:
        self._rest = transport

    async def get(self, kind: WebhookKind, name: str) -> JsonObject:
        return await self._rest.request("GET", f"{WEBHOOK_PATHS[kind]}/{name}")

    async def patch(self, kind: WebhookKind, name: str, patch: list[JsonObject]) -> None:
        # RestTransport always sends application/json; a JSON patch needs its own content type.
        path = f"{WEBHOOK_PATHS[kind]}/{name}"
        response: Any = await self._rest.api_client.call_api(
            path,
            "PATCH",
            body=patch,
            auth_settings=["BearerToken"],
            _preload_content=False,
            header_params={"Accept": "application/json", "Content-Type": "application/json-patch+json"},
        )
        try:
            raw = await response.read()
        finally:
            response.release()
        if not 200 <= response.status <= 299:
            raise error_for_status(response.status, raw.decode("utf-8", "replace")[:500])


class MemorySecretStore:
    """In-memory `SecretStore` with resourceVersion preconditions (a shipped test double)."""

    def __init__(self) -> None:
        self.objects: dict[str, JsonObject] = {}
        self._version = 0

    def _stamp(self, secret: JsonObject) -> JsonObject:
        self._version += 1
        stored = copy.deepcopy(secret)
        stored.setdefault("metadata", {})["resourceVersion"] = str(self._version)
        self.objects[stored["metadata"]["name"]] = stored
        return copy.deepcopy(stored)

    async def get(self, name: str) -> JsonObject | None:
        return copy.deepcopy(self.objects.get(name))

    async def create(self, secret: JsonObject) -> JsonObject:
        if secret["metadata"]["name"] in self.objects:
            raise Conflict(f"secret {secret['metadata']['name']} already exists")
        return self._stamp(secret)

    async def replace(self, secret: JsonObject) -> JsonObject:
        name = secret["metadata"]["name"]
        current = self.objects.get(name)
        if current is None:
            raise NotFound(f"secret {name} not found")
        if secret["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict(f"secret {name} changed since it was read")
        return self._stamp(secret)


class MemoryWebhookConfigStore:
    """In-memory `WebhookConfigStore`; `patches` records every patch applied."""

    def __init__(self, configs: Sequence[JsonObject] = ()) -> None:
        self.objects: dict[tuple[WebhookKind, str], JsonObject] = {}
        self.patches: list[tuple[WebhookKind, str, list[JsonObject]]] = []
        for config in configs:
            kind: WebhookKind = "mutating" if config["kind"].startswith("Mutating") else "validating"
            self.objects[(kind, config["metadata"]["name"])] = copy.deepcopy(config)

    async def get(self, kind: WebhookKind, name: str) -> JsonObject:
        try:
            return copy.deepcopy(self.objects[(kind, name)])
        except KeyError:
            raise NotFound(f"{kind}webhookconfigurations/{name} not found") from None

    async def patch(self, kind: WebhookKind, name: str, patch: list[JsonObject]) -> None:
        current = await self.get(kind, name)
        self.objects[(kind, name)] = jsonpatch.apply_patch(current, patch)
        self.patches.append((kind, name, patch))
