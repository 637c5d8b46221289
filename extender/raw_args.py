"""Filter/prioritize bodies read without re-decoding a node list the extender has seen before.

kube-scheduler (nodeCacheCapable) sends `{"Pod":{..},"Nodes":null,"NodeNames":["n1",..]}`, and at
5000 nodes decoding the names into 5000 Python strings is most of the parse. The scheduler sends
the same lists again and again (filter: its snapshot order; prioritize: what filter passed), so
`ArgsReader` cuts the `NodeNames` array out of the body as raw bytes and, when those bytes equal a
list it decoded before (one memcmp), reuses that list and hands the core the remembered bytes
object as the list's key (`ClusterIndex.positions`): its hash is cached, so the lookup is O(1).

Rules:
1. Answers are exactly `wire.parse_args_json(raw)`'s (same ExtenderArgs, same 400s): the cut is
   taken only when it provably is the top-level `NodeNames` value (below); anything else, and
   any body the fast form does not cover, goes through `parse_args_json` itself.
2. The cut: the last `"NodeNames":[` (Go writes NodeNames last and compact) up to the body's
   last `]`, replaced by a SENTINEL string and the rest decoded. The sentinel is made of NUL
   characters, whose only JSON spelling is `\\u0000`; a body that already contains `\\u0000` is
   not cut. So the decoded top-level `NodeNames` equals the sentinel only if the cut was that
   value (JSON is context-free: the original body is valid iff the rest and the cut are).
3. Lists handed out are shared between requests and must not be mutated.
4. The decoded and checked `Pod` object and its `PodView` are remembered by the rest of the body
   (pod and all, minus the names): filter and prioritize of one pod decode it once. Like the
   lists, the pod dicts handed out are shared and must not be mutated.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from accel.cluster.pods import PodView, parse_pod
from extender.wire import ExtenderArgs, parse_args_json
from serving.body import MAX_JSON_DEPTH, json_depth_exceeds

NAMES_OPEN = b'"NodeNames":['
NUL_ESCAPE = b"\\u0000"
SENTINEL = b'"\\u0000\\u0000\\u0000"'
SENTINEL_VALUE = "\x00\x00\x00"
LISTS_KEPT = 8  # distinct node lists remembered (filter's and prioritize's, a few pods deep)
PODS_KEPT = 64


@dataclass(frozen=True, slots=True)
class ReadArgs:
    """A parsed body: the args, the raw JSON of its NodeNames (a remembered bytes object, usable
    as the list's key) and the rest of the body (the pod's key); None where not in the fast form."""

    args: ExtenderArgs
    names_key: bytes | None = None
    pod_key: bytes | None = None


class ArgsReader:
    """Parses filter/prioritize bodies, remembering decoded node lists and pods (module rules)."""

    def __init__(self, *, max_depth: int = MAX_JSON_DEPTH) -> None:
        self.max_depth = max_depth
        self._lists: OrderedDict[bytes, list[str]] = OrderedDict()
        self._pods: OrderedDict[bytes, PodView] = OrderedDict()
        self._rests: OrderedDict[bytes, dict[str, Any]] = OrderedDict()  # body less names -> its Pod

    def read(self, raw: bytes) -> ReadArgs:
        """The body as ReadArgs; BadRequest exactly as `parse_args_json` (rule 1)."""
        fast = self._fast(raw)
        return fast if fast is not None else ReadArgs(parse_args_json(raw, max_depth=self.max_depth))

    def learn(self, key: bytes, names: list[str]) -> None:
        """Remember that the JSON `key` decodes to `names` (filter's passed list, which prioritize
        gets next): that body then needs no decode either. `key` must be a JSON encoding of `names`."""
        self._lists[key] = names
        self._lists.move_to_end(key)
        while len(self._lists) > LISTS_KEPT:
            self._lists.popitem(last=False)

    def pod(self, read: ReadArgs) -> PodView:
        """`parse_pod(read.args.pod)`, remembered by the body around the names (rule 4)."""
        if read.pod_key is None:
            return parse_pod(read.args.pod)
        view = self._pods.get(read.pod_key)
        if view is None:
            view = self._pods[read.pod_key] = parse_pod(read.args.pod)
            while len(self._pods) > PODS_KEPT:
                self._pods.popitem(last=False)
        return view

    def _fast(self, raw: bytes) -> ReadArgs | None:
        start = raw.rfind(NAMES_OPEN)
        end = raw.rfind(b"]") + 1
        if start < 0 or end <= start or NUL_ESCAPE in raw[:start] or NUL_ESCAPE in raw[end:]:
            return None
        start += len(NAMES_OPEN) - 1
        rest = raw[:start] + SENTINEL + raw[end:]
        pod = self._rests.get(rest)
        if pod is None:
            pod = self._pod_of(rest)
            if pod is None:
                return None
            self._rests[rest] = pod
            while len(self._rests) > PODS_KEPT:
                self._rests.popitem(last=False)
        found = self._names(raw[start:end])
        if found is None:
            return None
        key, names = found
        args = ExtenderArgs.model_construct(pod=pod, nodes=None, node_names=names)
        return ReadArgs(args, key, rest)

    def _pod_of(self, rest: bytes) -> dict[str, Any] | None:
        """The `Pod` of the body with the names cut out, if that body is in the fast form (rule 2)."""
        try:
            value = orjson.loads(rest)
        except orjson.JSONDecodeError:
            return None
        if type(value) is not dict or value.get("NodeNames") != SENTINEL_VALUE:
            return None
        pod = value.get("Pod")
        if type(pod) is not dict or value.get("Nodes") is not None:
            return None
        del value["NodeNames"]
        if json_depth_exceeds(value, self.max_depth):
            return None  # parse_args_json words the 400
        return pod

    def _names(self, cut: bytes) -> tuple[bytes, list[str]] | None:
        """(remembered key, list) for the raw NodeNames array; None if it is not a list of strings."""
        for key, names in self._lists.items():
            if key == cut:
                self._lists.move_to_end(key)
                return key, names
        try:
            decoded = orjson.loads(cut)
        except orjson.JSONDecodeError:
            return None
        if not _is_str_list(decoded):
            return None
        self.learn(cut, decoded)
        return cut, decoded


def _is_str_list(value: Any) -> bool:
    if type(value) is not list:
        return False
    try:
        "".join(value)  # C-speed proof that every item is a str (TypeError otherwise)
    except TypeError:
        return False
    return True
