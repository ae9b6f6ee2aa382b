"""The inspector in a real browser: Debian's Chromium, headless, through Debian's
chromedriver (both installed by mk/chromium.mk, same version), driven by Selenium, against
a real ``memstore serve`` process with auth on, the inspector enabled and seeded data in
two namespaces."""

from __future__ import annotations

import os
import secrets
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from memstore.server.auth import hash_token
from tests.support.procs import ServiceProcess, running_service

NS_A = "team-a"
NS_B = "team-b"
SECRET_MARK = "b-only-5e1c"  # planted in B's data; a token for A must never see it
NOTES = 60  # entities of type "note" in A
MESSAGES = 75  # messages of conversation "chat-1" in A
#: tool uses are spread over the day before the tests start (hourly charts)
BASE_TIME = float(int(time.time()) - 86_400)


@dataclass(frozen=True)
class Inspected:
    """The seeded service and its tokens."""

    svc: ServiceProcess
    admin: str  # every namespace, every role
    a_reader: str  # read on team-a only
    tool_durations: list[float]  # of A's tool uses, in time order

    @property
    def url(self) -> str:
        return self.svc.url


def call(svc: ServiceProcess, method: str, path: str, token: str, body: Any = None) -> Any:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(
        svc.url + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return orjson.loads(raw) if raw else None


def seed(svc: ServiceProcess, token: str) -> list[float]:
    a = f"/v1/namespaces/{NS_A}"
    for i in range(NOTES):
        call(svc, "PUT", f"{a}/entities/note/n{i:03d}", token,
             {"data": {"title": f"note {i}", "tags": ["seeded"], "rank": i}})  # fmt: skip
    for name in ("ada", "grace"):
        call(svc, "PUT", f"{a}/entities/person/{name}", token, {"data": {"name": name}})
    call(svc, "POST", f"{a}/conversations/chat-1/messages", token,
         {"messages": [{"role": "user" if i % 2 else "assistant", "content": f"message {i + 1}"}
                       for i in range(MESSAGES)]})  # fmt: skip
    call(svc, "POST", f"{a}/conversations/chat-2/messages", token,
         {"messages": [{"role": "user", "content": "hello"}]})  # fmt: skip
    durations = []
    for i in range(30):
        duration = float(5 + (i * 37) % 400)
        durations.append(duration)
        call(svc, "POST", f"{a}/tool-usage", token, {
            "tool_name": "search" if i % 3 else "fetch", "input": {"q": f"query {i}"},
            "output": "ok", "duration_ms": duration, "success": i % 7 != 0,
            "timestamp": BASE_TIME + i * 2880, "conversation_id": "chat-1"})  # fmt: skip
    for i in range(12):
        rating = {"agent_name": "planner", "feedback_type": "rating", "data": {"rating": i % 5}}
        call(svc, "POST", f"{a}/feedback", token, rating)
    b = f"/v1/namespaces/{NS_B}"
    call(svc, "PUT", f"{b}/entities/note/secret", token, {"data": {"text": SECRET_MARK}})
    call(svc, "POST", f"{b}/conversations/{SECRET_MARK}/messages", token,
         {"messages": [{"role": "user", "content": SECRET_MARK}]})  # fmt: skip
    call(svc, "POST", f"{b}/tool-usage", token,
         {"tool_name": "leak", "input": SECRET_MARK, "output": SECRET_MARK})  # fmt: skip
    return durations


@pytest.fixture(scope="session")
def inspected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inspected]:
    root = tmp_path_factory.mktemp("inspector")
    admin, a_reader = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    tokens = root / "tokens.json"
    tokens.write_bytes(orjson.dumps({"tokens": [
        {"name": "admin", "sha256": hash_token(admin), "namespaces": ["*"],
         "roles": ["read", "write", "admin"]},
        {"name": "a-reader", "sha256": hash_token(a_reader), "namespaces": [NS_A],
         "roles": ["read"]},
    ]}))  # fmt: skip
    env = {
        "MEMSTORE_AUTH_ENABLED": "true",
        "MEMSTORE_AUTH_TOKENS_FILE": str(tokens),
        "MEMSTORE_UI_ENABLED": "true",
        "MEMSTORE_EMBEDDER": "none",
        "MEMSTORE_WEBHOOKS_ENABLED": "false",
        "MEMSTORE_CHANGES_KEEPALIVE_SECONDS": "1",
    }
    with running_service(root / "data", env) as svc:
        durations = seed(svc, admin)
        yield Inspected(svc, admin, a_reader, durations)


@pytest.fixture(scope="session")
def screenshots(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Screenshots of each view: .pytest_cache/d/ui-screenshots (kept after the run), or
    the run's temporary folder when the cache is off (-p no:cacheprovider)."""
    cache = getattr(request.config, "cache", None)
    if cache is None:
        return tmp_path_factory.mktemp("ui-screenshots")
    return Path(cache.mkdir("ui-screenshots"))


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver's path is given: Selenium Manager (which would download one) never runs.
    service = Service(executable_path=os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def points(chart: WebElement) -> int:
    """How many points a chart of the inspector drew (its figure's data-points)."""
    return int(chart.get_attribute("data-points") or "-1")


class Page:
    """The inspector in the browser, as a person uses it."""

    def __init__(self, driver: webdriver.Chrome, url: str, shots: Path) -> None:
        self.driver = driver
        self.url = url
        self.shots = shots

    def open(self, token: str, namespace: str, view: str = "namespaces") -> None:
        self.driver.get(f"{self.url}/ui#{view}")
        self.driver.execute_script("sessionStorage.clear()")
        self.driver.get("about:blank")  # a real load of the page below, not a hash change
        self.driver.get(f"{self.url}/ui#{view}")
        self.settled()
        self.driver.get_log("browser")  # the requests made before the token was entered
        self.find("#token").send_keys(token)
        self.find("#namespace").clear()
        self.find("#namespace").send_keys(namespace)
        self.find("#access button[type=submit]").click()
        self.settled()

    def go(self, view: str) -> None:
        self.driver.find_element(By.CSS_SELECTOR, f"nav a[data-view={view}]").click()
        self.settled()

    def settled(self) -> None:
        WebDriverWait(self.driver, 10).until(
            lambda d: d.execute_script(
                "const m = document.getElementById('main');"
                "return m.dataset.view && !m.hasAttribute('aria-busy')"
            )
        )

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def wait_for(
        self, css: str, check: Callable[[WebElement], bool] = lambda e: True
    ) -> WebElement:
        def found(driver: webdriver.Chrome) -> WebElement | bool:
            for element in driver.find_elements(By.CSS_SELECTOR, css):
                if check(element):
                    return element
            return False

        result = WebDriverWait(self.driver, 10).until(found)
        assert isinstance(result, WebElement)
        return result

    def rows(self, table_css: str) -> list[list[str]]:
        table = self.wait_for(table_css)
        return [
            [
                cell.get_attribute("textContent") or ""
                for cell in row.find_elements(By.CSS_SELECTOR, "td")
            ]
            for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]

    def text(self) -> str:
        return str(self.driver.execute_script("return document.documentElement.outerHTML"))

    def shot(self, name: str) -> Path:
        time.sleep(0.2)  # let the canvas paint
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


@pytest.fixture
def page(browser: webdriver.Chrome, inspected: Inspected, screenshots: Path) -> Page:
    browser.get_log("browser")  # drop what earlier tests left
    return Page(browser, inspected.url, screenshots)
