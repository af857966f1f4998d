"""A property-based fuzzer over the Studio's HTTP API: whatever a client sends, the answer is a
documented status (never 5xx), refusals name the field at fault, and nothing is half-stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from studio_fixtures import (
    Clock,
    LiveStudio,
    WebClient,
    add_invite,
    make_studio,
    matcher_library,
)
from studio_fixtures import studio_config as config_for

from segue.studio.library import StudioLibrary

FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
JSON_ROUTES = ["/study/answer", "/study/played", "/listen/played", "/listen/answer"]
DOCUMENTED = {200, 206, 303, 400, 401, 403, 404, 409, 410, 413, 415, 416, 422, 429}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12)
bodies = st.one_of(
    st.fixed_dictionaries({}, optional={"item_id": json_values, "slot": json_values,
                                        "pick": json_values, "listened_s": json_values}),
    json_values,
)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, music_tracks: list[Path]
            ) -> Iterator[StudioLibrary]:
    with matcher_library(tmp_path_factory.mktemp("studio-fuzz"), music_tracks[:6],
                         min_duration_s=2.0) as lib:
        yield lib


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, library: StudioLibrary
         ) -> Iterator[LiveStudio]:
    studio = make_studio(config_for(tmp_path_factory.mktemp("fuzz-db"), clip_s=0.6),
                         library, Clock())
    with LiveStudio(studio) as s:
        yield s


@pytest.fixture(scope="module")
def annotator(live: LiveStudio) -> WebClient:
    client = WebClient(live.url)
    assert client.join(add_invite(live.studio, uses=100)).status_code == 303
    client.page_data("/study", "item")  # keeps the page's CSRF token
    return client


def documented(response: httpx.Response) -> None:
    assert response.status_code in DOCUMENTED, (response.status_code, response.text[:300])
    if 400 <= response.status_code < 500 and \
            response.headers.get("content-type", "").startswith("application/json"):
        refusal = response.json()
        assert isinstance(refusal["field"], str) and refusal["error"]


def consistent(live: LiveStudio) -> None:
    """No page is answered twice and every answer belongs to a page of its session."""
    answers = live.studio.store.answered()
    assert len({a.item_id for a in answers}) == len(answers)
    for a in answers:
        item = live.studio.store.item(a.item_id)
        assert item is not None and item.session_id == a.session_id


@FUZZ
@given(route=st.sampled_from(JSON_ROUTES), body=bodies, csrf=st.booleans())
def test_any_json_body_gets_a_documented_answer(
    live: LiveStudio, annotator: WebClient, route: str, body: Any, csrf: bool,
) -> None:
    raw = json.dumps(body, allow_nan=True).encode()
    response = annotator.request("POST", route, content=raw, headers={
        "content-type": "application/json", "x-csrf-token": annotator.csrf if csrf else "no"})
    documented(response)
    consistent(live)


@FUZZ
@given(raw=st.binary(max_size=2048), content_type=st.sampled_from([
    "application/json", "application/x-www-form-urlencoded", "text/plain",
    "multipart/form-data; boundary=x"]))
def test_any_bytes_get_a_documented_answer(
    live: LiveStudio, annotator: WebClient, raw: bytes, content_type: str,
) -> None:
    for route in (*JSON_ROUTES, "/admin/login", "/admin/invites"):
        response = annotator.request("POST", route, content=raw, headers={
            "content-type": content_type, "x-csrf-token": annotator.csrf})
        documented(response)
    consistent(live)


@FUZZ
@given(segment=st.text(min_size=1, max_size=200).filter(lambda s: "/" not in s and "?" not in
                                                        s and "#" not in s),
       range_header=st.one_of(st.none(), st.text(max_size=40),
                              st.from_regex(r"bytes=[0-9]{0,12}-[0-9]{0,12}", fullmatch=True)))
def test_any_path_or_range_gets_a_documented_answer(
    live: LiveStudio, annotator: WebClient, segment: str, range_header: str | None,
) -> None:
    headers = {} if range_header is None else {"range": range_header}
    for path in (f"/join/{segment}", f"/study/audio/{segment}/0",
                 f"/study/audio/{segment}/{segment}", f"/admin/export/{segment}"):
        try:
            response = annotator.request("GET", httpx.URL(live.url).copy_with(
                raw_path=httpx.URL(path).raw_path).path, headers=headers)
        except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
            continue  # not something a client can send
        documented(response)


@FUZZ
@given(form=st.dictionaries(st.sampled_from(["csrf", "agree", "password", "label",
                                             "max_uses", "days", "x" * 50]),
                            st.text(max_size=300), max_size=6))
def test_any_form_gets_a_documented_answer_and_joins_only_with_consent(
    live: LiveStudio, form: dict[str, str],
) -> None:
    invite = add_invite(live.studio, uses=1)
    before = len(live.studio.store.annotators())
    client = WebClient(live.url)
    for route in (f"/join/{invite}", "/admin/login"):
        documented(client.request("POST", route, data=form))
    assert len(live.studio.store.annotators()) == before  # no CSRF cookie: nobody joins
