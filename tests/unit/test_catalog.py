"""The built-in accelerator catalog: the data file validates and carries what scheduling and pricing need."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from accel.cluster.catalog import (
    CANONICAL_NAME_PATTERN,
    UNKNOWN_TYPE,
    CatalogFileError,
    load_builtin_catalog,
    parse_catalog,
)
from accel.cluster.products import MIG_PROFILE, parse_mig_profile

REQUIRED_TYPES = (
    "nvidia-t4-16gb",
    "nvidia-v100-16gb",
    "nvidia-v100-32gb",
    "nvidia-a10-24gb",
    "nvidia-a10g-24gb",
    "nvidia-a30-24gb",
    "nvidia-a40-48gb",
    "nvidia-a100-40gb",
    "nvidia-a100-80gb",
    "nvidia-l4-24gb",
    "nvidia-l40-48gb",
    "nvidia-l40s-48gb",
    "nvidia-h100-80gb",
    "nvidia-h100-94gb",
    "nvidia-h200-141gb",
    "nvidia-gh200-96gb",
    "nvidia-b200-180gb",
    "amd-mi210-64gb",
    "amd-mi250x-128gb",
    "amd-mi300x-192gb",
    "amd-mi325x-256gb",
    "intel-gaudi2-96gb",
    "intel-gaudi3-128gb",
    "intel-max-1550-128gb",
)
RESOURCE_BY_VENDOR_PREFIX = {
    "nvidia-": "nvidia.com/gpu",
    "amd-": "amd.com/gpu",
    "intel-gaudi": "habana.ai/gaudi",
    "intel-max": "gpu.intel.com/i915",
}


@pytest.fixture(scope="module")
def catalog():
    return load_builtin_catalog()


def test_builtin_catalog_is_cached_and_has_unknown(catalog):
    assert load_builtin_catalog() is catalog
    assert catalog[UNKNOWN_TYPE].vendor == "unknown"


@pytest.mark.parametrize("name", REQUIRED_TYPES)
def test_required_type_is_complete(catalog, name):
    accel_type = catalog[name]
    assert accel_type.display_name and accel_type.architecture and accel_type.model
    assert accel_type.memory_gb > 0
    assert accel_type.memory_bandwidth_tbps and accel_type.memory_bandwidth_tbps > 0
    assert accel_type.dense_tflops and accel_type.dense_tflops > 0
    assert accel_type.price is not None
    assert accel_type.price.usd_per_gpu_hour > 0
    assert accel_type.price.source and accel_type.price.date
    expected = next(r for prefix, r in RESOURCE_BY_VENDOR_PREFIX.items() if name.startswith(prefix))
    assert accel_type.resource_name == expected
    if accel_type.vendor != "intel" or accel_type.resource_name != "habana.ai/gaudi":
        assert accel_type.product_labels, "every labelled type needs the real label values for affinity"


def test_names_are_canonical_and_memory_matches_name(catalog):
    for accel_type in catalog:
        if accel_type.name == UNKNOWN_TYPE:
            continue
        assert CANONICAL_NAME_PATTERN.match(accel_type.name)
        assert accel_type.name.startswith(f"{accel_type.vendor}-")
        memory = int(re.search(r"-(\d+)gb$", accel_type.name).group(1))
        assert memory == round(accel_type.memory_gb), accel_type.name


def test_display_names_are_unique(catalog):
    names = [t.display_name for t in catalog]
    assert len(names) == len(set(names))


def test_product_labels_are_not_shared_between_types(catalog):
    # Case variants (PCIe / PCIE) may repeat within a type: node affinity compares values exactly.
    seen: dict[str, str] = {}
    for accel_type in catalog:
        for label in accel_type.product_labels:
            owner = seen.setdefault(label.lower(), accel_type.name)
            assert owner == accel_type.name, f"{label} in {owner} and {accel_type.name}"
            assert len(label) <= 63, "node label values are at most 63 characters"


def test_dense_tflops_are_dense_not_sparse(catalog):
    # The datasheets' sparse numbers are 2x; guard the usual slips on the best-known parts.
    assert catalog["nvidia-h100-80gb"].bf16_tflops == 989
    assert catalog["nvidia-a100-80gb"].bf16_tflops == 312
    assert catalog["nvidia-t4-16gb"].bf16_tflops is None and catalog["nvidia-t4-16gb"].fp16_tflops == 65


def test_unverified_prices_say_so(catalog):
    # Types whose fact-sheet price row is UNVERIFIED must carry that word in the source.
    for name in (
        "nvidia-v100-32gb",
        "nvidia-a30-24gb",
        "nvidia-h100-94gb",
        "nvidia-b200-180gb",
        "intel-gaudi2-96gb",
    ):
        assert "UNVERIFIED" in catalog[name].price.source


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        pytest.param("1g.10gb", (1, 10), id="plain"),
        pytest.param("1g.10gb+me", (1, 10), id="media-extension"),
        pytest.param("1g.24gb-me", (1, 24), id="minus-media"),
        pytest.param("4g.96gb+gfx", (4, 96), id="graphics"),
        pytest.param("7g.141gb", (7, 141), id="h200-full"),
        pytest.param("0g.10gb", None, id="zero-compute-is-invalid"),
        pytest.param("1g10gb", None, id="missing-dot"),
        pytest.param("1c.3g.20gb", None, id="compute-instance-profile-not-a-gpu-instance"),
        pytest.param("", None, id="empty"),
    ],
)
def test_parse_mig_profile(profile, expected):
    assert parse_mig_profile(profile) == expected


def test_every_mig_profile_parses_and_fits_its_gpu(catalog):
    for accel_type in catalog:
        for profile in accel_type.mig_profiles:
            assert MIG_PROFILE.match(profile), f"{accel_type.name}: {profile}"
            compute, memory = parse_mig_profile(profile)
            assert compute <= 7
            assert memory <= accel_type.memory_gb + 8, f"{accel_type.name}: {profile} exceeds the GPU"


def test_types_without_mig_list_none(catalog):
    for name in (
        "nvidia-t4-16gb",
        "nvidia-a10g-24gb",
        "nvidia-l40s-48gb",
        "nvidia-v100-32gb",
        "amd-mi300x-192gb",
    ):
        assert catalog[name].mig_profiles == ()


def test_override_replaces_fields_and_adds_types(catalog):
    updated = catalog.with_overrides(
        [
            {
                "name": "nvidia-a100-80gb",
                "price": {"usd_per_gpu_hour": 1.1, "source": "site", "date": "2026-11"},
            },
            {
                "name": "acme-x1-64gb",
                "displayName": "ACME X1 64GB",
                "vendor": "unknown",
                "model": "X1",
                "memoryGB": 64,
            },
        ]
    )
    assert updated["nvidia-a100-80gb"].price_per_gpu_hour == 1.1
    assert updated["nvidia-a100-80gb"].mig_profiles == catalog["nvidia-a100-80gb"].mig_profiles
    assert updated["acme-x1-64gb"].memory_gb == 64
    assert catalog["nvidia-a100-80gb"].price_per_gpu_hour == 2.5, "the original catalog is unchanged"


def test_override_with_bad_name_is_rejected(catalog):
    with pytest.raises(ValidationError, match="canonical type name"):
        catalog.with_overrides(
            [{"name": "A100", "displayName": "x", "vendor": "nvidia", "model": "A100", "memoryGB": 1}]
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("types: [", "not valid YAML", id="broken-yaml"),
        pytest.param("- a\n- b\n", "top-level 'types:'", id="no-types-key"),
        pytest.param(
            "types:\n- {name: nvidia-x-1gb, displayName: X, vendor: nvidia, model: X, memoryGB: -1}\n",
            r"types\[0\] \(nvidia-x-1gb\): memoryGB",
            id="negative-memory-points-at-entry-and-field",
        ),
        pytest.param(
            "types:\n- {name: nvidia-x-1gb, displayName: X, vendor: nvidia, model: X, memoryGB: 1}\n"
            "- {name: nvidia-x-1gb, displayName: Y, vendor: nvidia, model: X, memoryGB: 1}\n",
            "duplicate accelerator type",
            id="duplicate-name",
        ),
    ],
)
def test_parse_catalog_errors_say_where(text, message):
    with pytest.raises(CatalogFileError, match=message):
        parse_catalog(text, source="test.yaml")
