"""Only whoever has the token sees the dashboard: every request without it is refused (403),
asked by a plain HTTP client or by a browser."""

from __future__ import annotations

import pytest

from patas.dashboard.access import COOKIE_NAME
from tests.dashboard.served import Served, http_get, start_dashboard, text_of, wait_until
from tests.running import patas

PATHS = ("/", "/experiments/grid", "/experiments/grid/tasks/0", "/api/status", "/api/status/events",
         "/api/experiments/grid/tasks", "/api/experiments/grid/tasks/0/output", "/static/dashboard.js",
         "/static/vendor/vega.min.js", "/no/such/page")  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("access")
    assert patas("explore", "--cmd", "echo 'acc 0.{i}'", "--va", "i", "1", "4", "1", "-y", cwd=folder).code == 0
    dashboard = start_dashboard(folder)
    yield dashboard
    dashboard.stop()


def test_every_request_without_the_token_is_refused(served: Served):
    for path in PATHS:
        status, _, body = http_get(served.base + path)
        assert status == 403, path
        assert body.startswith(b"403 Forbidden"), path
        assert b"grid" not in body
    wrong = served.token[:-1] + ("A" if served.token[-1] != "A" else "B")
    for headers, query in (({}, f"?token={wrong}"), ({}, "?token="), ({"Authorization": f"token {wrong}"}, ""),
                           ({"Cookie": f"{COOKIE_NAME}={wrong}"}, ""), ({"Cookie": f"{COOKIE_NAME}={served.token[:10]}"}, "")):  # fmt: skip
        assert http_get(served.base + "/api/status" + query, headers)[0] == 403, (headers, query)


def test_the_token_in_the_url_sets_a_strict_http_only_cookie_that_then_suffices(served: Served):
    status, headers, body = http_get(served.url)
    assert status == 200 and b"<html" in body
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}={served.token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, _, body = http_get(served.base + "/api/status", {"Cookie": f"{COOKIE_NAME}={served.token}"})
    assert status == 200 and b'"grid"' in body
    status, _, _ = http_get(served.base + "/api/experiments/grid/tasks", {"Authorization": f"token {served.token}"})
    assert status == 200


def test_a_browser_without_the_token_sees_only_the_refusal(served: Served, browser):
    browser.delete_all_cookies()
    browser.get(served.base + "/")
    assert text_of(browser, "body").startswith("403 Forbidden")
    browser.get(served.url)  # the URL printed: the page, and its links work from then on
    wait_until(lambda: text_of(browser, "#experiments tr[data-experiment=grid] td.done") == "3", 30, "the lab page")
    browser.get(served.base + "/experiments/grid")
    wait_until(lambda: "3 of 3 done" in text_of(browser, "#counts"), 30, "the experiment page, by its link")


def test_a_name_that_is_no_experiment_of_the_lab_is_not_found(served: Served):
    auth = {"Authorization": f"token {served.token}"}
    for name in ("nope", "..", "%2E%2E", "grid%2F..%2F.."):
        status, _, body = http_get(f"{served.base}/api/experiments/{name}/tasks", auth)
        assert status == 404, (name, body)
