"""A replayed trace's pods and nodes, as the simulator sees them (reading the CSV files is cli.sim_trace)."""

from __future__ import annotations

from dataclasses import dataclass

from accel.placement.shapes import NodeShape, PodShape


class TraceError(ValueError):
    """A trace file is missing or malformed; the message names the file, row and fix."""


@dataclass(frozen=True, slots=True)
class TracePod:
    name: str
    shape: PodShape  # with memory, as the filter needs it
    gpu_spec: str = ""  # as written in the file: FGD keys its typical pods by this string


@dataclass(frozen=True, slots=True)
class TraceNode:
    name: str
    shape: NodeShape  # fully free
