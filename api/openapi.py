"""The OpenAPI 3.1 document for the API: paths written here, schemas generated from the models.

Request/response schemas come from the same pydantic models the handlers use
(`model_json_schema(by_alias=True)`), so the document cannot drift from the wire format.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from accel.estimates.models_table import KnownModel
from accel.estimates.rules import EstimateRequest, EstimateResult, FieldError
from accel.profiles.summary import ProfileSummary
from api.handlers import DraftRequest

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = _json_response("Error with what went wrong and how to fix it", _ref("Error"))
OBSERVED = {"type": "string", "format": "date-time", "description": "when the cluster state was observed"}


def _schemas() -> dict[str, Any]:
    """Component schemas: pydantic models (their nested $defs hoisted) plus a few hand-written ones."""
    schemas: dict[str, Any] = {}
    models: tuple[type[BaseModel], ...] = (
        ProfileSummary,
        EstimateRequest,
        EstimateResult,
        DraftRequest,
        FieldError,
        KnownModel,
    )
    for model in models:
        schema = model.model_json_schema(by_alias=True, ref_template=REF + "{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "errors": {"type": "array", "items": _ref("FieldError")}},
    }
    schemas["ProfileList"] = {
        "type": "object",
        "required": ["profiles", "observedAt"],
        "properties": {
            "profiles": {"type": "array", "items": _ref("ProfileSummary")},
            "observedAt": OBSERVED,
            "stale": {"type": "boolean"},
        },
    }
    schemas["ModelList"] = {
        "type": "object",
        "required": ["models"],
        "properties": {"models": {"type": "array", "items": _ref("KnownModel")}},
    }
    schemas["NodeList"] = {
        "type": "object",
        "required": ["nodes", "count", "observedAt"],
        "properties": {
            "nodes": {
                "type": "array",
                "items": {"type": "object", "description": "node view row (accel nodes -o json, camelCase)"},
            },
            "count": {"type": "integer"},
            "redacted": {"type": "boolean"},
            "sortKeys": {"type": "array", "items": {"type": "string"}},
            "observedAt": OBSERVED,
        },
    }
    schemas["Draft"] = {
        "type": "object",
        "required": ["profile", "nodes", "yaml"],
        "properties": {
            "profile": {"type": "object"},
            "nodes": {"type": "array", "items": {"type": "string"}},
            "alsoMatches": {"type": "array", "items": {"type": "string"}},
            "warnings": {"type": "array", "items": {"type": "string"}},
            "yaml": {"type": "string"},
            "observedAt": OBSERVED,
        },
    }
    return schemas


def _get(
    summary: str, ok: dict[str, Any], *, params: list[dict[str, Any]] | None = None, tag: str = "profiles"
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "responses": {"200": ok, "401": ERROR, "503": ERROR},
    }
    if params:
        op["parameters"] = params
    return {"get": op}


def _post(summary: str, body: str, ok: dict[str, Any], *, tag: str) -> dict[str, Any]:
    return {"post": {
        "summary": summary, "tags": [tag],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(body)}}},
        "responses": {"200": ok, "400": ERROR, "401": ERROR, "413": ERROR, "503": ERROR},
    }}


def _query(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


def _paths() -> dict[str, Any]:
    probe = {"description": "status", "content": {"application/json": {"schema": {"type": "object"}}}}
    name_param = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    one = _get(
        "One hardware profile", _json_response("the profile", _ref("ProfileSummary")), params=[name_param]
    )
    one["get"]["responses"]["404"] = ERROR
    return {
        "/": {
            "get": {
                "summary": "Web page: node view, profile cards, estimate form",
                "tags": ["web"],
                "responses": {
                    "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}
                },
            }
        },
        "/static/{filename}": {
            "get": {
                "summary": "Web page assets",
                "tags": ["web"],
                "parameters": [
                    {"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "file"}, "404": {"description": "no such file"}},
            }
        },
        "/api/hardware-profiles": _get(
            "Profiles visible to the caller, with availability and price",
            _json_response("profiles", _ref("ProfileList")),
        ),
        "/api/hardware-profiles/{name}": one,
        "/api/hardware-profiles/draft": _post(
            "Draft a profile from a node selection",
            "DraftRequest",
            _json_response("draft as JSON and policy YAML", _ref("Draft")),
            tag="profiles",
        ),
        "/api/nodes": _get(
            "Node view",
            _json_response("nodes", _ref("NodeList")),
            tag="nodes",
            params=[
                _query("type", "canonical type(s), comma-separated, or mixed/unknown"),
                _query("sort", "name|type|gpus|free|allocated|memory|zone|status; prefix - for descending"),
                _query("order", "asc (default) or desc"),
            ],
        ),
        "/api/accelerators": _get(
            "The accelerator catalog", _json_response("catalog", {"type": "object"}), tag="catalog"
        ),
        "/api/estimates": _post(
            "Training time, memory fit, serving speed and cost per profile",
            "EstimateRequest",
            _json_response("estimates, ranked", _ref("EstimateResult")),
            tag="estimates",
        ),
        "/api/models": _get(
            "Known model sizes for estimates", _json_response("models", _ref("ModelList")), tag="estimates"
        ),
        "/api/usage": {
            "get": {
                "summary": "GPU-hours and cost per team and type over ?since=7d (from Prometheus when "
                "api.prometheusUrl is set, else from the pods in the cluster now; `source` and `note` "
                "say which). Rows of the caller's own teams only; every team's for callers in "
                "settings.api.usageAdminGroups; none for anonymous callers (`scope` says which)",
                "tags": ["chargeback"],
                "parameters": [
                    {
                        "name": "since",
                        "in": "query",
                        "schema": {"type": "string", "default": "7d", "pattern": "^[0-9]+[smhdw]$"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "usage",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "window": {"type": "string"},
                                        "windowSeconds": {"type": "number"},
                                        "source": {"enum": ["prometheus", "pods"]},
                                        "note": {"type": "string"},
                                        "scope": {"type": "string"},
                                        "currency": {"type": "string"},
                                        "rows": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "properties": {
                                                    "team": {"type": "string"},
                                                    "type": {"type": "string"},
                                                    "gpuHours": {"type": "number"},
                                                    "cost": {"type": "number"},
                                                },
                                            },
                                        },
                                        "totals": {"type": "object"},
                                    },
                                }
                            }
                        },
                    },
                    "400": {"description": "malformed window"},
                    "502": {"description": "Prometheus did not answer"},
                },
            }
        },
        "/api/whoami": {
            "get": {
                "summary": "Who the API takes the caller to be (token, trusted proxy, anonymous, or the "
                "local "
                "--dev-identity) and the teams whose profiles that shows",
                "tags": ["meta"],
                "responses": {
                    "200": {
                        "description": "the caller",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "anonymous": {"type": "boolean"},
                                        "username": {"type": "string"},
                                        "groups": {"type": "array", "items": {"type": "string"}},
                                        "teams": {"type": ["array", "null"], "items": {"type": "string"}},
                                        "devIdentity": {"type": "boolean"},
                                        "observedAt": {"type": "string"},
                                    },
                                }
                            }
                        },
                    }
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "tags": ["meta"],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/healthz": {"get": {"summary": "Liveness", "tags": ["meta"], "responses": {"200": probe}}},
        "/readyz": {
            "get": {
                "summary": "Readiness (cluster state fresh)",
                "tags": ["meta"],
                "responses": {"200": probe, "503": probe},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "tags": ["meta"],
                "responses": {
                    "200": {
                        "description": "text exposition",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The whole document (built once; it depends only on code)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "accel hardware-profile API",
            "version": "1.0.0",
            "description": "Hardware profiles with live availability and price, the node view, profile "
            "drafts and estimates.",
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Kubernetes token (TokenReview)",
                }
            },
        },
        "security": [{}, {"bearer": []}],
        "paths": _paths(),
    }
