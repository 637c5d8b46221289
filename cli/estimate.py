"""`accel estimate`: training time, memory fit, serving speed and cost per hardware profile.

The same core call as `POST /api/estimates` (accel.estimates.estimator.estimate); flags map 1:1 to the
request fields. Example: `accel estimate --model llama-3-8b --tokens 2e9 --snapshot examples/cluster.yaml
--policy examples/policy` (each profile sized to the fewest GPUs that hold the model).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from accel.estimates.estimator import estimate
from accel.estimates.models_table import known_model_names
from accel.estimates.rules import (
    EstimateInputError,
    EstimateResult,
    ProfileEstimate,
    parse_estimate_request,
)
from cli.state import CliError, add_source_arguments, emit, load_policy, run_guarded
from cli.tables import render_table

FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--params", "params", float, "total parameters, e.g. 70e9 (instead of --model)"),
    ("--active-params", "activeParams", float, "parameters per token for mixture-of-experts models"),
    ("--tokens", "tokens", float, "training tokens in total, e.g. 2e12"),
    ("--dataset-tokens", "datasetTokens", float, "tokens in the dataset (with --epochs)"),
    ("--epochs", "epochs", float, "passes over the dataset (default 1)"),
    (
        "--gpus",
        "gpus",
        int,
        "GPUs (or replicas/slices) per job (default: per profile, the fewest that hold the model in memory)",
    ),
    ("--max-hours", "maxHours", float, "exclude profiles slower than this"),
    ("--max-cost-per-hour", "maxCostPerHour", float, "exclude profiles costing more USD per hour"),
    ("--min-tokens-per-second", "minTokensPerSecond", float, "serving: exclude profiles decoding slower"),
)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("estimate", help="training time and cost per hardware profile")
    parser.add_argument("--model", help=f"a known model: {', '.join(known_model_names())}")
    for flag, _key, kind, help_text in FLAGS:
        parser.add_argument(flag, type=kind, help=help_text)
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp16", "fp8", "fp32"))
    parser.add_argument("--workload", default="training", choices=("training", "inference"))
    parser.add_argument("--rank-by", default="time", choices=("time", "cost"))
    parser.add_argument("--profile", action="append", dest="profiles", help="only this profile (repeatable)")
    parser.add_argument("-o", "--output", default="table", choices=("table", "json", "yaml"))
    add_source_arguments(parser)
    parser.set_defaults(func=lambda args: run_guarded(_estimate, args))


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"precision": args.precision, "workload": args.workload, "rankBy": args.rank_by}
    if args.model:
        body["model"] = args.model
    if args.profiles:
        body["profiles"] = args.profiles
    for flag, key, _kind, _help in FLAGS:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            body[key] = value
    return body


def _estimate(args: argparse.Namespace) -> int:
    from accel.cluster.catalog import load_builtin_catalog
    from cli.state import load_objects

    objects = load_objects(args) if args.snapshot or not args.policy else None
    parsed = load_policy(args, objects, load_builtin_catalog())
    try:
        result = estimate(parse_estimate_request(request_body(args)), parsed)
    except EstimateInputError as exc:
        flag = {key: flag for flag, key, _k, _h in FLAGS}
        raise CliError(
            "cannot estimate:\n  "
            + "\n  ".join(f"{flag.get(e.field, '--' + e.field)}: {e.message}" for e in exc.errors)
        ) from exc
    over = [f"{e.profile} ({e.max_per_pod})" for e in result.estimates if args.gpus and e.pods > 1]
    if over:
        print(f"accel: warning: --gpus {args.gpus} is over the per-pod maximum of {', '.join(over)}; "
              "there the job must run as several pods", file=sys.stderr)
    if args.output == "table":
        print(render_result(result))
    else:
        emit(result.model_dump(mode="json", by_alias=True), args.output)
    return 0


HEADERS = ("#", "PROFILE", "TYPE", "GPUS", "HOURS", "FITS", "$/HOUR", "TOTAL $", "TOKENS/S", "NOTES")


def _cells(e: ProfileEstimate) -> list[str]:
    def fmt(value: float | None, spec: str = ",.1f") -> str:
        return "-" if value is None else format(value, spec)

    return [
        str(e.rank or "-"),
        e.profile,
        e.accelerator_type or "any",
        f"{e.gpus} {e.unit}",
        fmt(e.hours),
        ("yes" if e.fits else "no") if e.supported else "-",
        fmt(e.cost_per_hour, ",.2f"),
        fmt(e.total_cost, ",.0f"),
        fmt(e.tokens_per_second),
        "; ".join((*e.excluded_because, *e.notes)),
    ]


def render_result(result: EstimateResult) -> str:
    what = f"{result.model or 'model'} ({result.params / 1e9:g}B params"
    what += f", {result.tokens:.3g} tokens" if result.tokens else ""
    a = result.assumptions
    lines = [
        f"{result.workload} {what}, {result.precision}), ranked by {result.rank_by}",
        render_table(HEADERS, [_cells(e) for e in result.estimates]),
        *(
            [
                "GPUS: per profile, the fewest that hold the model in memory; choose another count with "
                "--gpus N"
            ]
            if any(e.gpus_sized_to_fit for e in result.estimates)
            else []
        ),
        f"assumptions: MFU {a.mfu}, scaling efficiency {a.scaling_efficiency}, {a.flops_per_param_token} "
        "FLOPs/param/token, "
        f"optimizer {a.optimizer_bytes_per_param} B/param, activations +{a.activation_overhead:.0%}; rules: "
        "accel/estimates/rules.py",
    ]
    return "\n".join(lines)
