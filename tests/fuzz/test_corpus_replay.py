"""Replay tests/corpus/<app>/* against the real apps: in-process for all, over HTTPS for a sample.

Every body goes to every POST route of its app (a webhook review also hits /validate, an estimate
body also hits the profile draft) and must satisfy `tests.fuzz.checks.check_answer`. Bodies over
the app's limit and back-pressure are checked per app too, because a route added without the
shared middlewares would skip them.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.fuzz import apps
from tests.fuzz.checks import check_answer
from tests.fuzz.conftest import Served

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
PER_REQUEST_TIMEOUT_S = 10.0
# Crashes the corpus found in code owned by other engineers, reported to them (see docs/reliability.md).
# A case listed here may fail; every other case must pass, and a listed case that passes is reported
# so the entry can be dropped. Remove entries as the owners fix them.
KNOWN_CRASHES: dict[
    str, frozenset[str]
] = {}  # all reported webhook crashes are fixed (shape check in the core)


def corpus_files(app: str) -> list[Path]:
    return sorted(
        p for p in (CORPUS / app).iterdir() if p.suffix in (".json", ".bin") and not p.name.startswith("get-")
    )


def get_specs() -> list[Path]:
    return sorted((CORPUS / "api").glob("get-*.json"))


def expectation(path: Path) -> str:
    prefix = path.name.split("-", 1)[0]
    assert prefix in ("bad", "any"), f"{path}: corpus file names start with bad- or any-"
    return prefix


def test_corpus_is_present_for_every_app() -> None:
    for app in apps.APP_NAMES:
        names = [p.name for p in corpus_files(app)]
        assert sum(n.startswith("bad-") for n in names) >= 10, app
        assert sum(n.startswith("any-") for n in names) >= 10, app


async def replay(app: str, client: Any, route: str, raw: bytes, expect: str) -> Any:
    headers = {"Content-Type": "application/json", **apps.auth_headers(app)}
    async with asyncio.timeout(PER_REQUEST_TIMEOUT_S):  # a hang fails here, with the case named
        resp = await client.post(route, data=raw, headers=headers)
        body = await resp.read()
    return check_answer(app, route, resp.status, body, sent=raw, expect=expect)


async def test_every_corpus_body_on_every_post_route(served: Served) -> None:
    name, client, routes = served
    assert routes, f"{name} serves no POST route"
    failures: list[str] = []
    crashed: set[str] = set()
    known = KNOWN_CRASHES.get(name, frozenset())
    for path in corpus_files(name):
        raw = path.read_bytes()
        for route in routes:
            try:
                await replay(name, client, route, raw, expectation(path))
            except AssertionError as exc:
                crashed.add(path.name)
                if path.name not in known:
                    failures.append(f"{path.name}: {exc}")
    assert not failures, "\n".join(failures)
    if fixed := sorted(known - crashed):
        print(f"{name}: known crashes now fixed, drop from KNOWN_CRASHES: {fixed}")
    if crashed:
        pytest.xfail(f"{name}: known crashes still present: {sorted(crashed)}")


async def test_api_get_corpus(served: Served) -> None:
    name, client, _ = served
    if name != "api":
        pytest.skip("GET corpus is for the API")
    for spec_path in get_specs():
        spec = json.loads(spec_path.read_text())
        async with asyncio.timeout(PER_REQUEST_TIMEOUT_S):
            resp = await client.get(spec["path"], headers=spec.get("headers", {}))
            body = await resp.read()
        check_answer(name, spec["path"], resp.status, body, sent=b"")


async def test_body_over_the_limit_is_413_without_reading_it(served: Served) -> None:
    name, client, routes = served
    limit = client.app._client_max_size  # the limit every app gets from make_base_app
    for route in routes:
        # Declared too large: refused from the header, before a byte of the body is read.
        resp = await client.post(route, data=b"{" + b" " * (limit + 1) + b"}",
                                 headers={"Content-Type": "application/json", **apps.auth_headers(name)})
        body = await resp.read()
        assert resp.status == 413, (route, resp.status, body[:200])
        check_answer(name, route, resp.status, body, sent=b"<huge>")


async def test_chunked_body_over_the_limit_is_413(served: Served) -> None:
    name, client, routes = served
    limit = client.app._client_max_size

    async def chunks() -> Any:  # no Content-Length: the limit must hold while reading
        chunk = b" " * (1 << 20)
        for _ in range(limit // len(chunk) + 2):
            yield chunk

    resp = await client.post(routes[0], data=chunks(), headers={"Content-Type": "application/json",
                                                               **apps.auth_headers(name)})  # fmt: skip
    body = await resp.read()
    assert resp.status == 413, (resp.status, body[:200])
    check_answer(name, routes[0], resp.status, body, sent=b"<chunked>")


def https_sample(app: str) -> list[Path]:
    """Every `bad-` case plus every fifth `any-` case (known crashes left out)."""
    files = [p for p in corpus_files(app) if p.name not in KNOWN_CRASHES.get(app, frozenset())]
    return [p for p in files if p.name.startswith("bad-")] + [p for p in files if p.name.startswith("any-")][
        ::5
    ]


@pytest.mark.parametrize("name", apps.APP_NAMES)
async def test_corpus_sample_over_real_https(name: str, tmp_path: Path) -> None:
    import aiohttp

    from serving.tls import ReloadingTLS
    from tests.fuzz.conftest import build, post_routes
    from tests.integration.test_tls_reload import running
    from tests.integration.tls_fixtures import client_context, make_cert_dir

    app = build(name)
    routes = post_routes(app)
    ctx = client_context(make_cert_dir(tmp_path).bundle)
    async with running(app, ReloadingTLS(tmp_path)) as port, aiohttp.ClientSession() as session:
        base = f"https://localhost:{port}"
        for path in https_sample(name):
            raw = path.read_bytes()
            for route in routes:
                headers = {"Content-Type": "application/json", **apps.auth_headers(name)}
                async with asyncio.timeout(PER_REQUEST_TIMEOUT_S), session.post(
                    base + route, data=raw, headers=headers, ssl=ctx
                ) as resp:
                    check_answer(
                        name, route, resp.status, await resp.read(), sent=raw, expect=expectation(path)
                    )


def test_docs_state_the_corpus_size_as_it_is() -> None:
    """README and docs/reliability.md quote the number of checked-in requests; it must be today's."""
    count = sum(
        1 for app in apps.APP_NAMES for p in (CORPUS / app).iterdir() if p.suffix in (".json", ".bin")
    )
    root = CORPUS.parents[1]
    for doc in (root / "README.md", root / "docs" / "reliability.md"):
        quoted = re.findall(r"(\d+) checked-in nasty requests", doc.read_text(encoding="utf-8"))
        assert quoted == [str(count)], (
            f"{doc.name} says {quoted} checked-in nasty requests; tests/corpus holds {count}"
        )
