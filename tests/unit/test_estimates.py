"""Estimates (accel/estimates/rules.py, accel/estimates/estimator.py): the math by hand, fit, ranking,
limits, errors."""

from __future__ import annotations

from typing import Any

import pytest

from accel.cluster.catalog import load_builtin_catalog
from accel.estimates.estimator import estimate
from accel.estimates.models_table import lookup_model
from accel.estimates.rules import EstimateInputError, parse_estimate_request, peak_tflops
from accel.policy.loading import parse_policy
from accel.policy.models import ParsedPolicy

PROFILES = """
profiles:
- name: h100
  accelerators: [{type: nvidia-h100-80gb}]
  gpus: {default: 8}
- name: h200
  accelerators: [{type: nvidia-h200-141gb}]
  gpus: {default: 8}
  costPerGpuHour: 10
- name: fallback
  accelerators: [{type: nvidia-h100-80gb}, {type: nvidia-a100-80gb}]
- name: v100
  accelerators: [{type: nvidia-v100-32gb}]
- name: l4-shared
  accelerators: [{type: nvidia-l4-24gb}]
  sharing: time-sliced
  replicas: 4
- name: any
"""
SETTINGS = "estimates: {mfu: 0.5, scalingEfficiency: 0.8}"


@pytest.fixture(scope="module")
def parsed() -> ParsedPolicy:
    return parse_policy({"profiles.yaml": PROFILES, "settings.yaml": SETTINGS}, load_builtin_catalog())


def _run(parsed: ParsedPolicy, **body: Any) -> dict[str, Any]:
    result = estimate(parse_estimate_request(body), parsed)
    return {e.profile: e for e in result.estimates} | {"_result": result}


def test_training_hours_follow_6nd_over_achievable_flops(parsed: ParsedPolicy) -> None:
    out = _run(parsed, params=7e9, tokens=1e12, gpus=8)
    assert parsed.catalog["nvidia-h100-80gb"].dense_tflops == 989.0  # the input the figure below used
    # 6 * 7e9 params * 1e12 tokens = 4.2e22 FLOP over 989e12 * mfu 0.5 * 8 GPUs * scaling 0.8
    # = 3.1648e15 FLOP/s: 1.3271e7 s = 3686.4 h (reported to the hour)
    assert out["h100"].hours == pytest.approx(3686.4, abs=0.5)
    assert out["_result"].assumptions.mfu == 0.5 and out["_result"].assumptions.scaling_efficiency == 0.8


def test_one_gpu_has_no_scaling_loss(parsed: ParsedPolicy) -> None:
    one, two = _run(parsed, params=1e9, tokens=1e10, gpus=1), _run(parsed, params=1e9, tokens=1e10, gpus=2)
    assert one["h100"].hours / two["h100"].hours == pytest.approx(2 * 0.8, rel=1e-3)


def test_cost_uses_policy_price_override(parsed: ParsedPolicy) -> None:
    out = _run(parsed, params=7e9, tokens=1e11, gpus=8)
    assert out["h200"].cost_per_hour == 80
    assert out["h200"].total_cost == pytest.approx(80 * out["h200"].hours, rel=1e-3)


@pytest.mark.parametrize(
    ("gpus", "fits"),
    [
        pytest.param(8, False, id="70b-training-on-8xh100-does-not-fit"),
        pytest.param(64, True, id="70b-training-sharded-over-64xh100-fits"),
    ],
)
def test_memory_fit_is_sharded_over_gpus(parsed: ParsedPolicy, gpus: int, fits: bool) -> None:
    out = _run(parsed, model="llama-3-70b", tokens=1e12, gpus=gpus, profiles=["h100"])
    est = out["h100"]
    assert est.fits is fits
    needed_total = 70.6e9 * (2 + 2 + 12) * 1.2 / 1e9
    assert est.memory_needed_gb_per_unit == pytest.approx(needed_total / gpus, rel=1e-3)
    assert est.min_gpus_to_fit == 19  # ceil(1355.5 GB / (80 GB x 0.9) = 18.8)
    assert (est.rank is not None) is fits


def test_precision_support_by_architecture(parsed: ParsedPolicy) -> None:
    v100 = parsed.catalog["nvidia-v100-32gb"]
    h100 = parsed.catalog["nvidia-h100-80gb"]
    assert peak_tflops(v100, "bf16")[0] is None and "fp16" in str(peak_tflops(v100, "bf16")[1])
    assert peak_tflops(v100, "fp8")[0] is None
    assert peak_tflops(h100, "fp8")[0] == 2 * h100.dense_tflops  # type: ignore[operator]
    assert peak_tflops(h100, "fp32")[0] == h100.dense_tflops / 2  # type: ignore[operator]
    assert peak_tflops(v100, "fp32")[0] == v100.dense_tflops / 8  # type: ignore[operator]
    out = _run(parsed, params=1e9, tokens=1e10, gpus=1, precision="bf16")
    assert out["v100"].rank is None and "no BF16" in out["v100"].excluded_because[0]


def test_ranking_by_time_and_by_cost(parsed: ParsedPolicy) -> None:
    by_time = _run(parsed, params=1e9, tokens=1e10, gpus=8, rankBy="time")["_result"]
    by_cost = _run(parsed, params=1e9, tokens=1e10, gpus=8, rankBy="cost")["_result"]
    ranked_time = [e for e in by_time.estimates if e.rank]
    assert [e.hours for e in ranked_time] == sorted(e.hours for e in ranked_time)
    ranked_cost = [e for e in by_cost.estimates if e.rank and e.total_cost is not None]
    assert [e.total_cost for e in ranked_cost] == sorted(e.total_cost for e in ranked_cost)
    # H100 and H200 have the same dense BF16 peak: tie on time (broken by name), but H200 at $10/h costs more.
    assert by_time.best == "fallback"
    cost_rank = {e.profile: e.rank for e in by_cost.estimates}
    assert cost_rank["h100"] < cost_rank["h200"]


def test_multi_type_profile_estimates_first_choice_and_lists_others(parsed: ParsedPolicy) -> None:
    out = _run(parsed, params=1e9, tokens=1e10, gpus=8)
    assert out["fallback"].accelerator_type == "nvidia-h100-80gb"
    assert out["fallback"].hours == out["h100"].hours
    assert out["fallback"].hours_by_type["nvidia-a100-80gb"] > out["fallback"].hours


def test_time_sliced_replica_gets_a_quarter_of_compute_and_memory(parsed: ParsedPolicy) -> None:
    out = _run(parsed, params=1e8, tokens=1e9, gpus=1, profiles=["l4-shared"])
    l4 = parsed.catalog["nvidia-l4-24gb"]
    assert out["l4-shared"].memory_gb_per_unit == pytest.approx(l4.memory_gb / 4)
    assert out["l4-shared"].peak_tflops_per_unit == pytest.approx(l4.dense_tflops / 4, rel=1e-3)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("limits", "excluded_profile", "reason_word"),
    [
        pytest.param({"maxHours": 1}, "h100", "limit", id="max-hours-excludes-slow-profiles"),
        pytest.param({"maxCostPerHour": 50}, "h200", "$", id="max-cost-per-hour-excludes-h200-at-80"),
        pytest.param({"minTokensPerSecond": 1e6}, "h100", "tokens/s", id="min-serving-speed-excludes-all"),
    ],
)
def test_limits_exclude_with_reasons(
    parsed: ParsedPolicy, limits: dict[str, float], excluded_profile: str, reason_word: str
) -> None:
    out = _run(parsed, params=7e9, tokens=1e12, gpus=8, **limits)
    assert out[excluded_profile].rank is None
    assert any(reason_word in r for r in out[excluded_profile].excluded_because)


def test_inference_ranks_by_tokens_per_second_from_bandwidth(parsed: ParsedPolicy) -> None:
    out = _run(parsed, model="llama-3-8b", workload="inference", gpus=1)
    assert parsed.catalog["nvidia-h100-80gb"].memory_bandwidth_tbps == 3.35  # the input used below
    # decoding reads every weight once per token: 3.35e12 B/s / (8.03e9 params * 2 B) = 208.6 tokens/s
    assert out["h100"].tokens_per_second == pytest.approx(208.6, rel=1e-3)
    assert out["h100"].hours is None
    ranked = [e for e in out["_result"].estimates if e.rank]
    assert [e.tokens_per_second for e in ranked] == sorted(
        (e.tokens_per_second for e in ranked), reverse=True
    )


def test_known_models_and_moe_active_params(parsed: ParsedPolicy) -> None:
    assert lookup_model("Llama_3_70B") == lookup_model("llama-3-70b")
    result = _run(parsed, model="mixtral-8x7b", datasetTokens=1e11, epochs=3, gpus=8)["_result"]
    assert (result.params, result.active_params, result.tokens) == (46.7e9, 12.9e9, 3e11)


def test_generic_and_disabled_profiles_are_explained(parsed: ParsedPolicy) -> None:
    out = _run(parsed, params=1e9, tokens=1e10)
    assert out["any"].supported is False and "generic" in out["any"].excluded_because[0]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        pytest.param({"params": -7e9, "tokens": 1e12}, {"params"}, id="negative-params"),
        pytest.param({"params": 7e9, "tokens": 0}, {"tokens"}, id="zero-tokens"),
        pytest.param(
            {"model": "gpt-99"}, {"model", "tokens"}, id="unknown-model-and-no-tokens-reported-together"
        ),
        pytest.param({"tokens": 1e12}, {"model"}, id="neither-model-nor-params"),
        pytest.param(
            {"params": 7e9, "tokens": 1, "precision": "int3"}, {"precision"}, id="unknown-precision"
        ),
        pytest.param({"params": 7e9, "tokens": 1, "gpu": 8}, {"gpu"}, id="misspelt-field"),
        pytest.param(
            {"params": 7e9, "tokens": 1, "datasetTokens": 1}, {"tokens"}, id="tokens-and-dataset-both"
        ),
    ],
)
def test_bad_input_names_every_field(body: dict[str, Any], fields: set[str]) -> None:
    with pytest.raises(EstimateInputError) as caught:
        parse_estimate_request(body)
    assert {e.field for e in caught.value.errors} == fields
    assert all(e.message for e in caught.value.errors)


def test_unknown_or_invisible_profile_is_an_input_error(parsed: ParsedPolicy) -> None:
    request = parse_estimate_request({"params": 1e9, "tokens": 1e10, "profiles": ["h100", "nope"]})
    with pytest.raises(EstimateInputError) as caught:
        estimate(request, parsed)
    assert [e.field for e in caught.value.errors] == ["profiles[1]"]
    with pytest.raises(EstimateInputError):
        estimate(request, parsed, visible=frozenset({"nope"}))
