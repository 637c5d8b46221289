"""Put the CA bundle where clients read it: webhook configurations and the scheduler config.

Pure functions over plain dicts (what YAML/JSON or the API server gives us); inputs are never
modified. PEM goes in base64 because the fields are `[]byte` in Go (protocols.md 1.5 and 2.3).

- `with_ca_bundle(config, pem)`: a Mutating/ValidatingWebhookConfiguration with
  `webhooks[*].clientConfig.caBundle` set on every webhook.
- `ca_bundle_patch(config, pem)`: the RFC 6902 JSON patch from `config` to that object (empty when
  already up to date), computed by `jsonpatch.make_patch` rather than built by hand.
- `with_extender_ca(config, pem)`: a KubeSchedulerConfiguration whose HTTPS extenders carry
  `tlsConfig.caData` (which takes precedence over `caFile`).
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch

WEBHOOK_CONFIG_KINDS: frozenset[str] = frozenset(
    {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
)
SCHEDULER_CONFIG_KIND = "KubeSchedulerConfiguration"


class InjectionError(ValueError):
    """The object is not the kind of configuration it should be; the message names the field."""


def encode_ca(ca_bundle_pem: bytes) -> str:
    """Base64 of the PEM bundle, as `caBundle` / `caData` want it."""
    if b"-----BEGIN CERTIFICATE-----" not in ca_bundle_pem:
        raise InjectionError("CA bundle is not PEM (no BEGIN CERTIFICATE line); pass the ca.crt file")
    return base64.b64encode(ca_bundle_pem).decode("ascii")


def with_ca_bundle(config: Mapping[str, Any], ca_bundle_pem: bytes) -> dict[str, Any]:
    """A copy of a webhook configuration with `clientConfig.caBundle` set on every webhook."""
    kind = config.get("kind")
    if kind not in WEBHOOK_CONFIG_KINDS:
        raise InjectionError(f"kind: expected one of {sorted(WEBHOOK_CONFIG_KINDS)}, got {kind!r}")
    webhooks = config.get("webhooks")
    if not isinstance(webhooks, list) or not webhooks:
        name = (config.get("metadata") or {}).get("name", "?")
        raise InjectionError(f"{kind}/{name}: webhooks: expected a non-empty list")
    encoded = encode_ca(ca_bundle_pem)
    out = copy.deepcopy(dict(config))
    for index, hook in enumerate(out["webhooks"]):
        if not isinstance(hook, dict):
            raise InjectionError(f"webhooks[{index}]: expected an object, got {type(hook).__name__}")
        client = hook.setdefault("clientConfig", {})
        if not isinstance(client, dict):
            raise InjectionError(f"webhooks[{index}].clientConfig: expected an object")
        client["caBundle"] = encoded
    return out


def ca_bundle_patch(config: Mapping[str, Any], ca_bundle_pem: bytes) -> list[dict[str, Any]]:
    """RFC 6902 operations that set every webhook's caBundle; [] when nothing would change."""
    patch: list[dict[str, Any]] = jsonpatch.make_patch(
        dict(config), with_ca_bundle(config, ca_bundle_pem)
    ).patch
    return patch


def extender_ca_data(ca_bundle_pem: bytes) -> str:
    """The value of `extenders[*].tlsConfig.caData` for this bundle."""
    return encode_ca(ca_bundle_pem)


def with_extender_ca(
    config: Mapping[str, Any], ca_bundle_pem: bytes, *, url_contains: str | None = None
) -> dict[str, Any]:
    """A copy of a KubeSchedulerConfiguration with `tlsConfig.caData` on its HTTPS extenders.

    Only extenders with `enableHTTPS: true` (and, if given, whose `urlPrefix` contains
    `url_contains`) are touched; `insecure` is forced off because a CA is now known.
    """
    if config.get("kind") != SCHEDULER_CONFIG_KIND:
        raise InjectionError(f"kind: expected {SCHEDULER_CONFIG_KIND}, got {config.get('kind')!r}")
    out = copy.deepcopy(dict(config))
    extenders = out.get("extenders") or []
    if not isinstance(extenders, list):
        raise InjectionError("extenders: expected a list")
    touched = 0
    encoded = extender_ca_data(ca_bundle_pem)
    for index, ext in enumerate(extenders):
        if not isinstance(ext, dict):
            raise InjectionError(f"extenders[{index}]: expected an object")
        if not ext.get("enableHTTPS") or (url_contains and url_contains not in str(ext.get("urlPrefix", ""))):
            continue
        tls = ext.setdefault("tlsConfig", {})
        tls["caData"] = encoded
        tls.pop("insecure", None)
        touched += 1
    if touched == 0:
        raise InjectionError(
            "extenders: no extender with enableHTTPS: true"
            + (f" and urlPrefix containing {url_contains!r}" if url_contains else "")
            + "; enable HTTPS on the accel extender first"
        )
    return out
