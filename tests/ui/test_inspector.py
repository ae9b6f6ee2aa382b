"""Each view of the inspector against seeded data, in Chromium, as a person uses it:
what it shows (numbers, rows, charts and their points), paging, the live feed, and a
token that must see nothing of another namespace. Screenshots of each view go to
.pytest_cache/d/ui-screenshots."""

from __future__ import annotations

import math
import threading
import time

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.ui.conftest import (
    BASE_TIME,
    MESSAGES,
    NOTES,
    NS_A,
    NS_B,
    SECRET_MARK,
    Inspected,
    Page,
    call,
    points,
)


def no_page_errors(page: Page) -> None:
    """Nothing the browser refused or failed on since the token was entered: a CSP
    violation, a script error, a failed request (but the analytics probe's 404 on a
    memstore without that API)."""
    severe = [
        e
        for e in page.driver.get_log("browser")
        if e["level"] == "SEVERE" and not ("/analytics/" in e["message"] and "404" in e["message"])
    ]
    assert severe == []


def test_namespaces_view_lists_counts(page: Page, inspected: Inspected) -> None:
    page.open(inspected.admin, NS_A)
    rows = {r[0]: r[1:] for r in page.rows("#namespace-list")}
    # Entities, conversations, messages, tool uses, feedback.
    assert rows[NS_A] == [str(NOTES + 2), "2", str(MESSAGES + 1), "30", "12"]
    assert rows[NS_B] == ["1", "1", "1", "1", "0"]
    figures = page.find("#namespace-figures").text
    assert f"Entities\n{NOTES + 2}" in figures
    assert [r[:2] for r in page.rows("#entity-type-counts")] == [
        ["note", str(NOTES)],
        ["person", "2"],
    ]
    # Bytes from the analytics overview, as the API counts them.
    overview = call(
        inspected.svc, "GET", f"/v1/namespaces/{NS_A}/analytics/overview", inspected.admin
    )
    assert overview["entities"]["bytes"] > 0
    assert f"Entity bytes\n{fmt_bytes(overview['entities']['bytes'])}" in figures
    # Growth: one point per hour from the oldest record (the tool uses) to now, for
    # each kind; the chart's table holds the same counts.
    growth = page.wait_for("#growth-chart")
    assert points(growth) in hours_since(BASE_TIME)
    assert growth.find_elements(By.CSS_SELECTOR, "canvas")
    table = page.rows("#growth-chart details table")
    assert len(table) == points(growth)
    totals = [sum(int(r[k].replace(",", "")) for r in table) for k in (1, 2, 3, 4)]
    assert totals == [NOTES + 2, MESSAGES + 1, 30, 12]
    page.shot("namespaces")
    no_page_errors(page)


def test_entity_browser_pages_and_shows_json(page: Page, inspected: Inspected) -> None:
    page.open(inspected.admin, NS_A, "entities")
    types = page.find("#entity-types").find_elements(By.TAG_NAME, "button")
    assert [b.text for b in types] == ["note", "person"]
    assert types[0].get_attribute("aria-pressed") == "true"
    ids = [r[0] for r in page.rows("#entity-page")]
    assert ids == [f"n{i:03d}" for i in range(25)]
    page.find("#entity-page ~ .pager button:last-of-type").click()
    page.wait_for("[data-page='2']")
    assert [r[0] for r in page.rows("#entity-page")] == [f"n{i:03d}" for i in range(25, 50)]
    page.find("#entity-page ~ .pager button:last-of-type").click()
    page.wait_for("[data-page='3']")
    last = [r[0] for r in page.rows("#entity-page")]
    assert last == [f"n{i:03d}" for i in range(50, NOTES)]
    assert not page.find("#entity-page ~ .pager button:last-of-type").is_enabled()
    page.driver.find_element(By.XPATH, "//table[@id='entity-page']//button[text()='n055']").click()
    detail = page.wait_for("#entity-detail pre.json")
    assert '"title": "note 55"' in detail.text
    assert "note/n055, version 1" in page.find("#entity-detail h3").text
    page.shot("entities")
    # Another type.
    types[1].click()
    page.wait_for("#entity-page", lambda t: "ada" in t.text)
    assert [r[0] for r in page.rows("#entity-page")] == ["ada", "grace"]
    no_page_errors(page)


def test_conversation_viewer_pages_through_history(page: Page, inspected: Inspected) -> None:
    page.open(inspected.admin, NS_A, "conversations")
    rows = page.rows("#conversation-page")
    assert [r[:2] for r in rows] == [["chat-1", str(MESSAGES)], ["chat-2", "1"]]
    page.driver.find_element(By.XPATH, "//button[text()='chat-1']").click()
    page.wait_for("#message-page")
    seqs = [int(r[0]) for r in page.rows("#message-page")]
    assert seqs == list(range(MESSAGES - 24, MESSAGES + 1))  # the newest 25
    assert page.rows("#message-page")[-1][2] == f"message {MESSAGES}"
    older = page.driver.find_element(
        By.XPATH, "//section[@id='messages']//button[text()='Older messages']"
    )
    older.click()
    page.wait_for("#messages [data-page='2']")
    assert [int(r[0]) for r in page.rows("#message-page")] == list(
        range(MESSAGES - 49, MESSAGES - 24)
    )
    older = page.driver.find_element(
        By.XPATH, "//section[@id='messages']//button[text()='Older messages']"
    )
    older.click()
    page.wait_for("#messages [data-page='3']")
    assert [int(r[0]) for r in page.rows("#message-page")] == list(range(1, MESSAGES - 49))
    assert not page.driver.find_element(
        By.XPATH, "//section[@id='messages']//button[text()='Older messages']"
    ).is_enabled()
    page.driver.find_element(
        By.XPATH, "//section[@id='messages']//button[text()='Newer messages']"
    ).click()
    page.wait_for("#messages [data-page='2']")
    assert int(page.rows("#message-page")[0][0]) == MESSAGES - 49
    page.shot("conversations")
    no_page_errors(page)


def fmt_bytes(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB"


def hours_since(t: float) -> set[int]:
    """Hour buckets from ``t`` to now (either side of an hour passing in the test)."""
    return {int(time.time() // 3600 - t // 3600 + 1) + d for d in (0, 1)}


def nearest_rank(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(p * len(ordered) / 100) - 1]


def test_tool_analytics_per_tool(page: Page, inspected: Inspected) -> None:
    page.open(inspected.admin, NS_A, "tools")
    stats = {r[0]: r[1:] for r in page.rows("#tool-stats")}
    durations = inspected.tool_durations
    for tool, picked in (("fetch", range(0, 30, 3)), ("search", [i for i in range(30) if i % 3])):
        mine = [durations[i] for i in picked]
        failures = sum(1 for i in picked if i % 7 == 0)
        assert stats[tool] == [
            str(len(mine)), str(failures), f"{(len(mine) - failures) / len(mine) * 100:.1f} %",
            *(f"{nearest_rank(mine, p):.1f} ms" for p in (50, 90, 99)),
        ]  # fmt: skip
        # Histogram: one bar per bin of the API (14 bounds and the rest), counts sum to calls.
        histogram = page.wait_for(f"[id='tool-histogram-{tool}']")
        assert histogram.get_attribute("data-points") == "15"
        assert histogram.find_elements(By.CSS_SELECTOR, "canvas")
        bars = [int(r[1]) for r in page.rows(f"[id='tool-histogram-{tool}'] details table")]
        assert sum(bars) == len(mine)
        slowest = page.rows(f"[id='tool-slowest-{tool}']")
        assert [float(r[1].split()[0]) for r in slowest] == sorted(mine, reverse=True)[:5]
    failing = page.rows("[id='tool-failures-search']")
    assert {r[2] for r in failing} == {"failed"}
    assert len(failing) == sum(1 for i in range(30) if i % 3 and i % 7 == 0)
    # Calls over time: a point per hour since the first call, the two tools' calls in it.
    calls = page.wait_for("#tool-calls-chart")
    assert points(calls) in hours_since(BASE_TIME)
    rows = page.rows("#tool-calls-chart details table")
    assert [sum(int(r[k]) for r in rows) for k in (1, 2)] == [10, 20]
    page.shot("tool-analytics")
    no_page_errors(page)


def test_tool_usage_lists_calls_and_charts_them(page: Page, inspected: Inspected) -> None:
    page.open(inspected.admin, NS_A, "tools")
    rows = page.rows("#tool-page")
    assert len(rows) == 25
    assert [float(r[2].split()[0]) for r in rows] == inspected.tool_durations[:25]
    assert [r[3] for r in rows].count("failed") == sum(1 for i in range(25) if i % 7 == 0)
    chart = page.wait_for("#tool-page-chart")
    assert chart.get_attribute("data-points") == "25"
    assert chart.find_elements(By.CSS_SELECTOR, "canvas")
    assert len(chart.find_elements(By.CSS_SELECTOR, "details tbody tr")) == 25
    label = chart.find_element(By.CSS_SELECTOR, "[role=img]").get_attribute("aria-label")
    assert label is not None and "25 calls, 4 failed" in label
    # Filter by tool: the server answers only that tool's calls.
    select = page.find("#tool-filter")
    select.send_keys("fetch")
    page.wait_for("#tool-page-chart", lambda c: c.get_attribute("data-points") == "10")
    assert {r[1] for r in page.rows("#tool-page")} == {"fetch"}
    page.shot("tools")
    no_page_errors(page)


def test_feedback_view(page: Page, inspected: Inspected) -> None:
    page.open(inspected.admin, NS_A, "feedback")
    rows = page.rows("#feedback-page")
    assert len(rows) == 12
    assert {r[1] for r in rows} == {"planner"}
    assert [r[3] for r in rows][:3] == ['{"rating":0}', '{"rating":1}', '{"rating":2}']
    # Recorded now: the chart counts them in the current hour, with their mean rating.
    chart = page.wait_for("#feedback-chart")
    buckets = page.rows("#feedback-chart details table")
    assert len(buckets) == points(chart) >= 1
    assert sum(int(r[1]) for r in buckets) == 12
    assert [r[2] for r in buckets if r[1] != "0"] == [f"{sum(i % 5 for i in range(12)) / 12:.2f}"]
    page.shot("feedback")
    no_page_errors(page)


def test_live_view_shows_new_changes(page: Page, inspected: Inspected) -> None:
    page.open(inspected.admin, NS_A, "live")
    page.wait_for("#live-count", lambda e: e.text == "20 changes shown.")
    # A write from elsewhere appears at the top, without reloading.
    threading.Thread(
        target=call,
        args=(
            inspected.svc,
            "PUT",
            f"/v1/namespaces/{NS_A}/entities/person/linus",
            inspected.admin,
        ),
        kwargs={"body": {"data": {"name": "linus"}}},
    ).start()
    page.wait_for("#live-count", lambda e: e.text == "21 changes shown.")
    first = page.rows("#live-table")[0]
    assert first[2:] == ["entity.saved", "person/linus", "admin"]
    page.shot("live")
    call(inspected.svc, "DELETE", f"/v1/namespaces/{NS_A}/entities/person/linus", inspected.admin)
    no_page_errors(page)


def test_keyboard_reaches_every_view(page: Page, inspected: Inspected) -> None:
    page.open(inspected.admin, NS_A)
    link = page.find("nav a[data-view=conversations]")
    link.send_keys(Keys.ENTER)
    page.wait_for("#conversation-page")
    assert page.find("main").get_attribute("data-view") == "conversations"
    # Focus moved to the view's heading, so a screen reader announces the new view.
    focused = page.driver.switch_to.active_element
    assert focused.tag_name == "h2" and "Conversations" in focused.text
    # Every form control has a label.
    unlabelled = page.driver.execute_script(
        "return [...document.querySelectorAll('input, select')]"
        ".filter(e => !(e.labels && e.labels.length)).map(e => e.id)"
    )
    assert unlabelled == []


def test_token_for_a_sees_nothing_of_b(page: Page, inspected: Inspected) -> None:
    page.open(inspected.a_reader, NS_A)
    assert "admin role" in page.find("main").text  # no namespace list for this token
    assert NS_B not in page.text()
    for view in ("entities", "conversations", "tools", "feedback", "live"):
        page.go(view)
        assert SECRET_MARK not in page.text()
        assert NS_B not in page.text()
    # Asking for B by name: refused by the API, and the page shows the refusal only.
    page.open(inspected.a_reader, NS_B, "entities")
    assert "Not allowed" in page.find("main").text
    for view in ("namespaces", "entities", "conversations", "tools", "feedback", "live"):
        page.go(view)
        assert SECRET_MARK not in page.text()
        assert not page.driver.find_elements(By.CSS_SELECTOR, "main table tbody tr")
    page.shot("forbidden")
