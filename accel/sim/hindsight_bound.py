"""An upper bound on the GPU milli any packing of a pod set can allocate: a Lagrangian relaxation.

Problem (P): choose which pods to place and where, each pod at most once, every node within its
CPU, memory and per-device GPU milli, GPU models as `pod_fits` allows; maximise placed GPU milli.
Every policy's cluster state (online or hindsight) is a feasible solution of (P) for the pods that
arrived so far, so the bound caps all of them.

Relaxation. Pods with the same shape form a class c (n_c pods, g_c = count x milli each).
Nodes with the same (model, devices, CPU, memory) form a type t (N_t nodes). Dualise
"at most n_c pods of class c" with y_c >= 0, and each node's CPU and memory with lambda_t,
nu_t >= 0. For any such multipliers

    UB = sum_c n_c y_c + sum_t N_t K_t,
    K_t = lambda_t C_t + nu_t M_t + max over device-feasible multisets S on one node of type t of
          sum_{c in S} (g_c - y_c - lambda_t cpu_c - nu_t mem_c)

is >= the optimum of (P) (weak duality: for a feasible packing each dualised term is >= 0, and
dropping "at most n_c" and CPU/memory from the inner problem only enlarges it). The inner problem
keeps the per-device structure exactly except that it allows any number of pods per class:
1. one-device pods: each device is an unbounded knapsack of capacity 1000 milli;
2. multi-GPU pods with whole devices: a knapsack over the node's device count;
3. multi-GPU pods with partial devices (none in the openb trace): each becomes count slices of
   its milli worth 1/count of its value, placed independently (a further relaxation).
A class is offered to a node type only if one pod fits an empty node of it (model, device count,
CPU, memory). So the 810-milli slivers, the per-model capacities and the per-node CPU per GPU all
enter the bound; CPU-only pods are worth 0 and never appear (a packing may leave them out).

Multipliers are found by projected subgradient descent with Polyak steps towards a known
feasible value; every iterate gives a valid bound, the best is kept. Exact arithmetic is not
needed for validity: the knapsacks are solved exactly over floats, and the caller pads the sum by
`FLOAT_SLACK` before flooring.

Per-event bounds come for free: with the same multipliers, the bound for the first e pods is
UB - sum over the later pods of y_c(pod), still a valid bound (the argument never used the counts
beyond n_c in sum_c n_c y_c), and each event is also capped by its arrived GPU milli.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from accel.placement.shapes import MILLI, NodeShape, PodShape

#: Relative padding of the floating-point bound before it is floored to whole milli.
FLOAT_SLACK = 1e-9
_NEG = -1e18


@dataclass(frozen=True, slots=True)
class BoundResult:
    """`per_event[e]` bounds the allocated GPU milli after the first e+1 pods (capped by arrivals)."""

    upper_bound_milli: float  # for the whole pod set, before the arrival cap
    per_event: np.ndarray  # int64
    iterations: int


class _Model:
    """Classes, node types and the fixed arrays of the relaxation."""

    def __init__(self, nodes: Sequence[NodeShape], pods: Sequence[PodShape]) -> None:
        classes: dict[PodShape, int] = {}
        self.class_of = np.full(len(pods), -1, dtype=np.int64)
        for i, pod in enumerate(pods):
            if pod.gpu_milli > 0 and pod.gpu_count > 0:
                self.class_of[i] = classes.setdefault(pod, len(classes))
        self.classes = list(classes)
        self.n = np.bincount(self.class_of[self.class_of >= 0], minlength=len(self.classes)).astype(float)
        types: dict[tuple[str, int, int, int], int] = {}
        for node in nodes:
            key = (node.gpu_type, len(node.free_milli), node.cpu_left_milli, node.memory_left_mib)
            if key[1] > 0:  # a node without GPUs allocates no GPU milli
                types[key] = types.get(key, 0) + 1
        self.types = list(types)
        self.count = np.array([types[t] for t in self.types], dtype=float)
        self.gpus = np.array([t[1] for t in self.types], dtype=np.int64)
        self.cpu_cap = np.array([t[2] for t in self.types], dtype=float)
        self.mem_cap = np.array([t[3] for t in self.types], dtype=float)
        c = self.classes
        self.g = np.array([p.total_gpu_milli for p in c], dtype=float)
        self.cpu = np.array([p.cpu_milli for p in c], dtype=float)
        self.mem = np.array([p.memory_mib for p in c], dtype=float)
        self.k = np.array([p.gpu_count for p in c], dtype=np.int64)
        self.milli = np.array([p.gpu_milli for p in c], dtype=np.int64)
        self.eligible = np.array([[
            (not p.gpu_types or t[0] in p.gpu_types) and p.gpu_count <= t[1] and p.cpu_milli <= t[2]
            and p.memory_mib <= t[3] for p in c] for t in self.types], dtype=bool)
        self.eligible = self.eligible.reshape(len(self.types), len(c))
        # Device knapsack items: one-device pods and slices of partial multi-device pods.
        self.device_item = (self.k == 1) | (self.milli < MILLI)
        step = 0
        for m in self.milli[self.device_item]:
            step = math.gcd(step, int(m))
        self.unit = math.gcd(step, MILLI) if step else MILLI
        self.cells = MILLI // self.unit
        self.weights = sorted({int(m) // self.unit for m in self.milli[self.device_item]})
        self.weight_index = {w: j for j, w in enumerate(self.weights)}
        self.class_weight = np.array([self.weight_index.get(int(m) // self.unit, -1) if d else -1
                                      for m, d in zip(self.milli, self.device_item, strict=True)])
        self.multi = np.flatnonzero(~self.device_item)


def _evaluate(model: _Model, y: np.ndarray, lam: np.ndarray, nu: np.ndarray) -> tuple[float, np.ndarray]:
    """The bound for multipliers (y per class, lambda and nu per type) and, per type and class, how
    many pods of the class one node of the type takes in the inner optimum (for the subgradient)."""
    T, C = len(model.types), len(model.classes)
    value = (model.g[None, :] - y[None, :]
             - lam[:, None] * model.cpu[None, :] - nu[:, None] * model.mem[None, :])
    value = np.where(model.eligible, value, _NEG)
    per_slice = np.where(model.device_item[None, :], value / np.maximum(model.k, 1)[None, :], _NEG)
    take = np.zeros((T, C))
    # 1. one device: best value per weight, then an unbounded knapsack over 0..cells units.
    W = len(model.weights)
    best_val = np.full((T, W), _NEG)
    best_cls = np.full((T, W), -1, dtype=np.int64)
    for c in np.flatnonzero(model.device_item):
        j = model.class_weight[c]
        better = per_slice[:, c] > best_val[:, j]
        best_val[better, j] = per_slice[better, c]
        best_cls[better, j] = c
    weights = np.array(model.weights, dtype=np.int64)
    dp = np.zeros((T, model.cells + 1))
    choice = np.full((T, model.cells + 1), -1, dtype=np.int64)
    for cap in range(1, model.cells + 1):
        dp[:, cap] = dp[:, cap - 1]
        usable = np.flatnonzero(weights <= cap)
        if usable.size:
            cand = dp[:, cap - weights[usable]] + best_val[:, usable]
            j = np.argmax(cand, axis=1)
            top = cand[np.arange(T), j]
            better = top > dp[:, cap]
            dp[better, cap] = top[better]
            choice[better, cap] = usable[j[better]]
    device_value = dp[:, model.cells]
    device_take = np.zeros((T, C))
    for t in range(T):
        cap = model.cells
        while cap > 0:
            j = choice[t, cap]
            if j < 0:
                cap -= 1
                continue
            device_take[t, best_cls[t, j]] += 1.0
            cap -= model.weights[j]
    # 2. whole-device multi-GPU pods: knapsack over the device count, the rest as devices of (1).
    inner = np.zeros(T)
    for t in range(T):
        G = int(model.gpus[t])
        best = [0.0] * (G + 1)
        pick: list[int] = [-1] * (G + 1)
        for d in range(1, G + 1):
            best[d], pick[d] = best[d - 1], -1
            for c in model.multi:
                k = int(model.k[c])
                if k <= d and value[t, c] > 0 and best[d - k] + value[t, c] > best[d]:
                    best[d], pick[d] = best[d - k] + value[t, c], int(c)
        top, top_d = -1.0, 0
        for d in range(G + 1):
            total = best[d] + (G - d) * device_value[t]
            if total > top:
                top, top_d = total, d
        inner[t] = top
        take[t] += (G - top_d) * device_take[t] / model.k  # a slice of a k-device pod is 1/k of it
        d = top_d
        while d > 0:
            if pick[d] < 0:
                d -= 1
            else:
                take[t, pick[d]] += 1.0
                d -= int(model.k[pick[d]])
    bound = float(np.dot(model.n, y) + np.dot(model.count, lam * model.cpu_cap + nu * model.mem_cap + inner))
    return bound, take


def _dff_eps(milli: np.ndarray, eps: int) -> np.ndarray:
    """Dual-feasible function u_eps (Martello-Toth): 1000 above 1000-eps, 0 below eps, else milli.
    Any device's pods have sum u <= 1000 (for eps <= 500)."""
    return np.where(milli > MILLI - eps, MILLI, np.where(milli < eps, 0, milli)).astype(float)


def _dff_fs(milli: np.ndarray, k: int) -> np.ndarray:
    """Dual-feasible function u^(k) (Fekete-Schepers): milli where (k+1) milli / 1000 is whole,
    else floor((k+1) milli / 1000) x 1000 / k."""
    scaled = (k + 1) * milli
    whole = scaled % MILLI == 0
    return np.where(whole, milli, (scaled // MILLI) * MILLI / k).astype(float)


def _dff_starts(model: _Model) -> list[np.ndarray]:
    """Scaled class multipliers ty from dual-feasible functions u: y = max(0, g - theta x u) per
    device slice. Then a device's pods are worth sum min(milli, theta u) <= theta x 1000, so the
    bound is at most arrived - theta (sum_c n_c u_c - 1000 x devices): below the arrived milli
    whenever the pods' u-volume exceeds the devices. For each u, the theta of that closed form's
    minimum (one of the breakpoints milli / u) is kept."""
    milli = model.milli.astype(float)
    per = np.maximum(model.k, 1).astype(float)
    devices = float((model.count * model.gpus).sum())
    funcs = [_dff_eps(model.milli, e) for e in range(10, 501, 10)]
    funcs += [_dff_fs(model.milli, k) for k in range(1, 11)]
    starts = []
    for u in funcs:
        breaks = sorted({float(m / v) for m, v in zip(milli, u, strict=True) if v > 0})
        best, best_theta = math.inf, 0.0
        for theta in breaks:
            y_slice = np.maximum(0.0, milli - theta * u)
            closed = float(np.dot(model.n, y_slice * per)) + devices * MILLI * theta
            if closed < best:
                best, best_theta = closed, theta
        y_slice = np.maximum(0.0, milli - best_theta * u)
        starts.append((best, np.divide(y_slice, milli, out=np.ones_like(milli), where=milli > 0)))
    starts.sort(key=lambda s: s[0])
    return [ty for _b, ty in starts[:4]]


def gpu_upper_bound(nodes: Sequence[NodeShape], pods: Sequence[PodShape], *, target_milli: float,
                    iterations: int = 400) -> BoundResult:
    """Minimise the Lagrangian bound for `pods` (in arrival order) on `nodes`.

    `target_milli` is a feasible packing's allocated milli (Polyak's step aims at it; any value
    works, a close one converges faster). Returns the best bound seen and the per-event bounds.
    """
    model = _Model(nodes, pods)
    T, C = len(model.types), len(model.classes)
    gpu = np.fromiter((p.total_gpu_milli for p in pods), dtype=np.int64, count=len(pods))
    arrived = np.cumsum(gpu)
    if C == 0 or T == 0:
        return BoundResult(0.0, np.zeros(len(pods), dtype=np.int64), 0)
    # Scaled multipliers: y_c = ty_c g_c; lambda_t = tl_t G_t MILLI / C_t (value per node-CPU share).
    ty, tl, tn = np.ones(C), np.zeros(T), np.zeros(T)  # ty = 1: the bound is the arrived milli
    lam_scale = model.gpus * MILLI / np.maximum(model.cpu_cap, 1.0)
    nu_scale = model.gpus * MILLI / np.maximum(model.mem_cap, 1.0)
    best_bound, best = math.inf, (ty.copy(), tl.copy(), tn.copy())
    for start in [np.zeros(C), *_dff_starts(model)]:  # y = 0: every device's best fill, no more
        bound, _take = _evaluate(model, start * model.g, tl, tn)
        if bound < best_bound:
            best_bound, best = bound, (start.copy(), tl.copy(), tn.copy())
    ty = best[0].copy()
    theta, stall = 0.05, 0  # small steps from the best start: large ones zig-zag between configs
    used = 0
    while used < iterations:
        used += 1
        y, lam, nu = ty * model.g, tl * lam_scale, tn * nu_scale
        bound, take = _evaluate(model, y, lam, nu)
        if bound < best_bound - 1e-6:
            best_bound, best, stall = bound, (ty.copy(), tl.copy(), tn.copy()), 0
        else:
            stall += 1
            if stall >= 25:
                theta, stall = theta / 2, 0
                if theta < 1e-3:
                    break
        used_n = (model.count[:, None] * take).sum(axis=0)
        g_y = model.g * (model.n - used_n)
        cpu_used = (take * model.cpu[None, :]).sum(axis=1)
        mem_used = (take * model.mem[None, :]).sum(axis=1)
        g_l = model.count * (model.cpu_cap - cpu_used) * lam_scale
        g_n = model.count * (model.mem_cap - mem_used) * nu_scale
        # Projection: directions that would push a multiplier below 0 (or ty above 1) do not count.
        g_y = np.where((ty <= 0) & (g_y > 0), 0.0, np.where((ty >= 1) & (g_y < 0), 0.0, g_y))
        g_l = np.where((tl <= 0) & (g_l > 0), 0.0, g_l)
        g_n = np.where((tn <= 0) & (g_n > 0), 0.0, g_n)
        norm = float(g_y @ g_y + g_l @ g_l + g_n @ g_n)
        if norm <= 0:
            break  # a zero subgradient: these multipliers are optimal
        step = theta * max(bound - target_milli, 1.0) / norm
        ty = np.clip(ty - step * g_y, 0.0, 1.0)
        tl = np.maximum(tl - step * g_l, 0.0)
        tn = np.maximum(tn - step * g_n, 0.0)
    ty, tl, tn = best
    y = ty * model.g
    bound, _take = _evaluate(model, y, tl * lam_scale, tn * nu_scale)
    y_of_pod = np.where(model.class_of >= 0, y[np.maximum(model.class_of, 0)], 0.0)
    later = np.concatenate([np.cumsum(y_of_pod[::-1])[::-1][1:], [0.0]])  # y of the pods after e
    per_event = bound - later
    per_event = np.floor(per_event + FLOAT_SLACK * max(abs(bound), 1.0))
    capacity = sum(len(n.free_milli) for n in nodes) * MILLI
    per_event = np.minimum(np.minimum(per_event, arrived), capacity).astype(np.int64)
    return BoundResult(bound, per_event, used)
