"""The analytics routes over real HTTP (embedded store): answers match the OpenAPI
document and the numbers of the seed, the client gives the same records as the manager,
and every bad parameter is a 400 naming it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from memstore.client import MemoryClient
from memstore.core.analytics import FeedbackAnalytics, GrowthSeries
from memstore.core.errors import InvalidInputError
from tests.api.conftest import SpecChecker

Client = TestClient[Any, Any]
NS = "/v1/namespaces/agent"
A = f"{NS}/analytics"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


async def get(http: Client, spec: SpecChecker, template: str, **params: Any) -> Any:
    resp = await http.get(template.replace("{namespace}", "agent"), params=params)
    body = await resp.json()
    assert resp.status == 200, body
    spec.check("GET", template, 200, body)
    return body


async def seed(http: Client) -> None:
    for i, (minutes, duration, ok) in enumerate(
        [(0, 10.0, True), (10, 30.0, False), (20, 20.0, True), (70, 40.0, True)]
    ):
        resp = await http.post(
            f"{NS}/tool-usage",
            json={
                "id": f"u{i}",
                "tool_name": "search",
                "input": {"q": i},
                "duration_ms": duration,
                "success": ok,
                "timestamp": T0 + 60 * minutes,
            },
        )
        assert resp.status == 201
    for data in ({"rating": 3}, {"rating": 4}, {"comment": "none"}):
        resp = await http.post(
            f"{NS}/feedback", json={"agent_name": "bot", "feedback_type": "rating", "data": data}
        )
        assert resp.status == 201
    resp = await http.put(f"{NS}/entities/note/n1", json={"data": {"x": 1}})
    assert resp.status == 201


async def test_analytics_routes(http: Client, spec: SpecChecker) -> None:
    await seed(http)
    p = "/v1/namespaces/{namespace}/analytics"
    overview = await get(http, spec, f"{p}/overview")
    assert overview["entities"]["count"] == 1
    assert overview["entities"]["bytes"] == 7
    assert overview["tool_usage"] == {
        "count": 4, "bytes": 4 * 11, "oldest": T0, "newest": T0 + 4200,
    }  # fmt: skip
    assert overview["feedback"]["count"] == 3
    growth = await get(
        http, spec, f"{p}/growth", kind="tool_usage", since=T0, until=T0 + 7199, bucket="hour"
    )
    assert [(pt["start"], pt["count"]) for pt in growth["points"]] == [(T0, 3), (T0 + 3600, 1)]
    tools = await get(http, spec, f"{p}/tools", since=T0, until=T0 + 7199, limit=1)
    (search,) = tools["tools"]
    assert (search["calls"], search["successes"], search["failures"]) == (4, 3, 1)
    assert search["duration_ms"] == {"p50": 20.0, "p90": 40.0, "p99": 40.0}
    assert [r["id"] for r in search["slowest"]] == ["u3"]
    assert [r["id"] for r in search["recent_failures"]] == ["u1"]
    assert [(pt["calls"], pt["successes"]) for pt in search["series"]] == [(3, 2), (1, 1)]
    feedback = await get(http, spec, f"{p}/feedback", bucket="day")
    assert len(feedback["points"]) == 30
    assert (feedback["count"], feedback["rating_count"], feedback["rating_mean"]) == (3, 2, 3.5)
    assert feedback["points"][-1]["count"] == 3  # today


async def test_client_gives_what_the_manager_gives(http: Client, remote: MemoryClient) -> None:
    await seed(http)
    window = {"since": T0, "until": T0 + 7199}
    tools = await remote.analytics_tools(since=T0, until=T0 + 7199, limit=2)
    body = await (await http.get(f"{A}/tools", params=window | {"limit": 2})).json()
    assert tools.to_dict() == body
    growth = await remote.analytics_growth("tool_usage", bucket="day", since=T0, until=T0 + 7199)
    assert isinstance(growth, GrowthSeries)
    assert growth.total == 4 and growth.bucket_seconds == 86400
    feedback = await remote.analytics_feedback()
    assert isinstance(feedback, FeedbackAnalytics)
    assert feedback.rating_mean == 3.5
    overview = await remote.analytics_overview()
    assert overview.entity_types["note"].count == 1
    assert overview.to_dict() == await (await http.get(f"{A}/overview")).json()


BAD = [
    ("growth", {"kind": "planets"}, "kind"),
    ("growth", {}, "kind"),
    ("growth", {"kind": "entities", "bucket": "week"}, "bucket"),
    ("tools", {"bucket": "minute"}, "bucket"),
    ("tools", {"since": str(T0 + 10), "until": str(T0)}, "since"),
    ("tools", {"since": "yesterday"}, "since"),
    ("feedback", {"until": "-1"}, "until"),
    ("feedback", {"since": "0", "until": str(T0)}, "since"),  # 490,897 hour buckets
    ("tools", {"limit": "101"}, "limit"),
    ("tools", {"limit": "x"}, "limit"),
    ("tools", {"tool_name": "bad name"}, "tool_name"),
]


@pytest.mark.parametrize(("route", "params", "field"), BAD)
async def test_bad_parameters_are_400_naming_them(
    http: Client, route: str, params: dict[str, str], field: str
) -> None:
    resp = await http.get(f"{A}/{route}", params=params)
    body = await resp.json()
    assert resp.status == 400, body
    assert body["code"] == "invalid_input"
    assert body["details"]["field"] == field, body


async def test_client_refuses_the_same_before_sending(remote: MemoryClient) -> None:
    with pytest.raises(InvalidInputError) as err:
        await remote.analytics_growth("entities", bucket="week")
    assert err.value.details["field"] == "bucket"
    with pytest.raises(InvalidInputError) as err:
        await remote.analytics_tools(since=time.time() + 10, until=time.time())
    assert err.value.details["field"] == "since"
    with pytest.raises(InvalidInputError) as err:
        await remote.analytics_tools(limit=-1)
    assert err.value.details["field"] == "limit"
