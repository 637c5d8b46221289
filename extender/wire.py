"""kube-scheduler extender wire format (`k8s.io/kube-scheduler/extender/v1`), typed once.

The Go structs have no json tags, so keys are the exact Go field names (PascalCase) and nil
values travel as `null` (docs/protocols.md 1.2). Python attributes are snake_case with the Go
names as aliases. Replies always carry every key, and the node list the scheduler reads is never
`null` by accident: `NodeNames` answers names, `Nodes` answers objects (protocols.md 1.3).

Rendering of the two large replies (filter, prioritize) goes straight to orjson from plain
dicts keyed by these aliases: building 5000 pydantic objects per request would cost more than
the decision itself. The prioritize reply is gathered from per-node fragments rendered once per
node list (`extender.priority_reply.PriorityRenderer`; padded with JSON whitespace, so equal as
JSON, not byte for byte). Tests validate every rendered body against the models below.

Parsing (`extender.raw_args.ArgsReader`, general path `parse_args_json`) applies serving.body's rules
(non-empty, valid JSON, an object, at
most MAX_JSON_DEPTH levels) with the same messages, but does not walk a `NodeNames` list of plain
strings for depth (it is two levels deep by construction): at 5000 nodes that walk cost more than
the decision.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from accel.placement.filter_columns import FilterOutcome
from serving.body import MAX_JSON_DEPTH, BadRequest, decode_object, json_depth_exceeds


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class NodeList(_Wire):
    metadata: dict[str, Any] = Field(default_factory=dict)
    items: list[dict[str, Any]] = Field(default_factory=list)


class ExtenderArgs(_Wire):
    """Filter/prioritize request: `Pod` plus `NodeNames` (nodeCacheCapable) or `Nodes`."""

    pod: dict[str, Any] = Field(alias="Pod")
    nodes: NodeList | None = Field(default=None, alias="Nodes")
    node_names: list[str] | None = Field(default=None, alias="NodeNames")

    @model_validator(mode="after")
    def _one_node_form(self) -> ExtenderArgs:
        if self.nodes is None and self.node_names is None:
            raise ValueError(
                "send NodeNames (nodeCacheCapable: true) or Nodes (a v1 NodeList); both are null"
            )
        return self

    @property
    def names(self) -> list[str]:
        if self.node_names is not None:
            return self.node_names
        assert self.nodes is not None
        return [str((item.get("metadata") or {}).get("name") or "") for item in self.nodes.items]


class ExtenderFilterResult(_Wire):
    nodes: NodeList | None = Field(default=None, alias="Nodes")
    node_names: list[str] | None = Field(default=None, alias="NodeNames")
    failed_nodes: dict[str, str] = Field(default_factory=dict, alias="FailedNodes")
    failed_and_unresolvable_nodes: dict[str, str] = Field(
        default_factory=dict, alias="FailedAndUnresolvableNodes"
    )
    error: str = Field(default="", alias="Error")


class HostPriority(_Wire):
    host: str = Field(alias="Host")
    score: int = Field(alias="Score")


class ExtenderBindingArgs(_Wire):
    pod_name: str = Field(alias="PodName", min_length=1)
    pod_namespace: str = Field(alias="PodNamespace", min_length=1)
    pod_uid: str = Field(default="", alias="PodUID")
    node: str = Field(alias="Node", min_length=1)


class ExtenderBindingResult(_Wire):
    error: str = Field(default="", alias="Error")


class MetaPod(_Wire):
    uid: str = Field(alias="UID", min_length=1)


class MetaVictims(_Wire):
    pods: list[MetaPod] = Field(default_factory=list, alias="Pods")
    num_pdb_violations: int = Field(default=0, alias="NumPDBViolations")

    @field_validator("pods", mode="before")
    @classmethod
    def _null_pods(cls, value: Any) -> Any:
        return [] if value is None else value  # Go marshals a nil slice as null


class Victims(_Wire):
    """Full-pod victims (nodeCacheCapable: false); only each pod's `metadata.uid` is used."""

    pods: list[dict[str, Any]] = Field(default_factory=list, alias="Pods")
    num_pdb_violations: int = Field(default=0, alias="NumPDBViolations")

    @field_validator("pods", mode="before")
    @classmethod
    def _null_pods(cls, value: Any) -> Any:
        return [] if value is None else value

    def meta(self) -> MetaVictims:
        """The Meta form the reply needs; a victim pod without `metadata.uid` is a BadRequest."""
        uids = []
        for i, pod in enumerate(self.pods):
            uid = (pod.get("metadata") or {}).get("uid")
            if not isinstance(uid, str) or not uid:
                raise BadRequest(f"malformed ExtenderPreemptionArgs: victim pod {i} has no metadata.uid")
            uids.append(MetaPod(uid=uid))
        return MetaVictims(pods=uids, num_pdb_violations=self.num_pdb_violations)


class ExtenderPreemptionArgs(_Wire):
    """Preempt request: `Pod` plus `NodeNameToMetaVictims` (nodeCacheCapable) or `NodeNameToVictims`."""

    pod: dict[str, Any] = Field(alias="Pod")
    node_name_to_victims: dict[str, Victims] | None = Field(default=None, alias="NodeNameToVictims")
    node_name_to_meta_victims: dict[str, MetaVictims] | None = Field(
        default=None, alias="NodeNameToMetaVictims"
    )

    @model_validator(mode="after")
    def _one_victims_form(self) -> ExtenderPreemptionArgs:
        if self.node_name_to_victims is None and self.node_name_to_meta_victims is None:
            raise ValueError(
                "send NodeNameToMetaVictims (nodeCacheCapable: true) or NodeNameToVictims; both are null"
            )
        return self

    def meta_victims(self) -> dict[str, MetaVictims]:
        """Candidates in the Meta form, in the order sent (the Meta map wins when both are sent)."""
        if self.node_name_to_meta_victims is not None:
            return dict(self.node_name_to_meta_victims)
        assert self.node_name_to_victims is not None
        return {node: victims.meta() for node, victims in self.node_name_to_victims.items()}


class ExtenderPreemptionResult(_Wire):
    node_name_to_meta_victims: dict[str, MetaVictims] = Field(
        default_factory=dict, alias="NodeNameToMetaVictims"
    )


def _validation_message(exc: ValidationError, what: str) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return f"malformed {what}: {where}: {first['msg']} ({exc.error_count()} problem(s) in all)"


def parse_args_json(raw: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> ExtenderArgs:
    """Raw filter/prioritize body -> ExtenderArgs; BadRequest with serving.body's messages.

    The general path of the one ExtenderArgs parser, `extender.raw_args.ArgsReader` (which the
    app uses; it answers the common nodeCacheCapable body faster, and exactly the same). Same
    checks in the same order as model validation of `serving.body.parse_json_object(raw)`. The
    depth walk skips `NodeNames` once the model accepted it: a validated list of strings (the
    alias wins over the field name when both are sent) is two levels deep.
    """
    value = decode_object(raw)
    too_deep = BadRequest(f"JSON nests deeper than {max_depth} levels")
    try:
        args = ExtenderArgs.model_validate(value)
    except ValidationError as exc:
        if json_depth_exceeds(value, max_depth):
            raise too_deep from None
        raise BadRequest(_validation_message(exc, "ExtenderArgs")) from None
    walk = value
    if isinstance(value.get("NodeNames"), list):
        walk = {k: v for k, v in value.items() if k != "NodeNames"}
    if json_depth_exceeds(walk, max_depth):
        raise too_deep
    return args


def parse_binding(body: dict[str, Any]) -> ExtenderBindingArgs:
    try:
        return ExtenderBindingArgs.model_validate(body)
    except ValidationError as exc:
        raise BadRequest(_validation_message(exc, "ExtenderBindingArgs")) from None


def render_filter(args: ExtenderArgs, outcome: FilterOutcome | None, error: str = "") -> bytes:
    """The filter reply in the form the request used; an error reply passes no node."""
    passed = outcome.passed if outcome else []
    body: dict[str, Any] = {
        "Nodes": None,
        "NodeNames": None,
        "FailedNodes": outcome.failed if outcome else {},
        "FailedAndUnresolvableNodes": outcome.unresolvable if outcome else {},
        "Error": error,
    }
    if args.node_names is not None:
        body["NodeNames"] = passed
    else:
        assert args.nodes is not None
        keep = set(passed)
        items = [i for i in args.nodes.items if str((i.get("metadata") or {}).get("name") or "") in keep]
        body["Nodes"] = {"metadata": args.nodes.metadata, "items": items}
    return orjson.dumps(body)


def parse_preemption(body: dict[str, Any]) -> ExtenderPreemptionArgs:
    """The preempt body as ExtenderPreemptionArgs; BadRequest (HTTP 400) saying what is wrong."""
    try:
        return ExtenderPreemptionArgs.model_validate(body)
    except ValidationError as exc:
        raise BadRequest(_validation_message(exc, "ExtenderPreemptionArgs")) from None


def render_preemption(victims: dict[str, MetaVictims]) -> bytes:
    """ExtenderPreemptionResult: always `NodeNameToMetaVictims`, PascalCase keys (protocols.md 1.6)."""
    return orjson.dumps(
        {"NodeNameToMetaVictims": {node: v.model_dump(by_alias=True) for node, v in victims.items()}}
    )


def render_binding(error: str = "") -> bytes:
    return orjson.dumps({"Error": error})
