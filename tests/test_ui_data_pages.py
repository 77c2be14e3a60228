"""The admin UI's data pages in a real browser (Playwright + Debian's Chromium): a key created in the UI and
used through the OpenAI SDK shows in the logs (detail panel on click, live tail without reload), in usage
(the CSV reconciles with /spend/logs) and in the overview; the audit log shows its creation; the playground
streams an answer; the guardrails and cache page; no console error or failed request anywhere."""

from __future__ import annotations

import csv
import io
import math
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai
import pytest

from tests import ui_browser
from tests.conftest import MASTER_KEY, gateway_config, start_gateway

browser, ui = ui_browser.browser, ui_browser.ui  # fixtures


@pytest.fixture(scope="module")
def gateway(mocks, tmp_path_factory):
    config = gateway_config(mocks)
    config["litellm_settings"]["cache"] = True
    config["guardrails"] = [{"guardrail_name": "no-secrets", "litellm_params": {
        "guardrail": "lockgate_max_input_size", "mode": "pre_call", "max_chars": 100000}}]
    gw = start_gateway(config, tmp_path_factory.mktemp("ui-data"))
    yield gw
    gw.process.terminate()
    gw.process.wait(10)


def sign_in(page, base: str) -> None:
    page.goto(base + "/ui/login")
    page.get_by_label("Master key", exact=True).fill(MASTER_KEY)
    page.get_by_role("button", name="Sign in with the master key").click()
    page.wait_for_url(re.compile(r".*/ui/keys$"))


def admin_api(gateway) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=20)


def ask(gateway, key: str, text: str, stream: bool = False) -> str:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=20)
    if stream:
        parts = client.chat.completions.create(model="openai-model", stream=True,
                                               messages=[{"role": "user", "content": text}])
        return "".join((c.choices[0].delta.content or "") for c in parts if c.choices)
    answer = client.chat.completions.create(model="openai-model", messages=[{"role": "user", "content": text}])
    return answer.choices[0].message.content or ""


def spend_logs_for(gateway, token: str) -> list[dict]:
    with admin_api(gateway) as api:
        return api.get("/spend/logs", params={"api_key": token, "page_size": 1000}).json()["data"]


def wait_for(condition, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def made_key(gateway, browser):
    """A key created in the UI (its alias, raw value, token) and two requests made with it by the SDK."""
    watched = ui_browser.watch(browser)
    page = watched.page
    sign_in(page, gateway.url)
    page.get_by_role("link", name="Create key").click()
    page.get_by_label("Alias").fill("data-pages-key")
    page.get_by_role("button", name="Create key").click()
    raw = page.get_by_label("The new key").input_value()
    watched.context.close()
    assert watched.unexpected() == []
    assert ask(gateway, raw, "hello from the SDK") != ""
    assert ask(gateway, raw, "and a stream", stream=True) != ""
    token = wait_for(lambda: (rows := spend_logs_for(gateway, raw)) and len(rows) >= 2 and rows[0]["api_key"],
                     "the spend rows")
    return {"alias": "data-pages-key", "raw": raw, "token": token}


def test_logs_show_the_sdk_requests_open_a_detail_and_tail_live(gateway, ui, made_key):
    page = ui.page
    sign_in(page, gateway.url)
    page.get_by_role("link", name="Logs").click()
    page.wait_for_url(re.compile(r".*/ui/logs$"))
    table = page.locator("#logs-table")
    assert table.get_by_text("data-pages-key").count() >= 2
    assert made_key["raw"] not in page.content()

    first_id = spend_logs_for(gateway, made_key["token"])[0]["request_id"]
    opener = page.get_by_role("button", name=f"Details of request {first_id}")
    opener.focus()  # the keyboard opens it too: a real button, reached by Tab, pressed with Enter
    page.keyboard.press("Enter")
    page.locator("#detail").get_by_text(f"Request {first_id}").wait_for()
    assert "openai-model" in page.locator("#detail").inner_text()
    ui.screenshot("logs")

    # filters: by key (the raw key is accepted, matched by its hash) and by status
    page.get_by_label("Key (sk-… or hash)").fill(made_key["token"])
    page.get_by_label("Status").select_option("error")
    page.get_by_role("button", name="Filter").click()
    page.get_by_text("No requests match.").wait_for()

    # the live tail: a request made now appears without a reload
    page.get_by_role("button", name="Start live tail").click()
    page.get_by_text("Connected: new requests appear here.").wait_for()
    url_before = page.url
    assert ask(gateway, made_key["raw"], "live one") != ""
    tail_rows = page.locator("#tail-rows tr")
    tail_rows.first.wait_for()
    assert "openai-model" in tail_rows.first.inner_text() and "data-pages-key" in tail_rows.first.inner_text()
    assert page.url == url_before
    ui.screenshot("logs-live-tail")
    page.get_by_role("button", name="Stop live tail").click()
    page.get_by_text("Stopped.").wait_for()


# what has the focus: its id, role, accessible name (aria-label, its labels, or its text) and how it shows
FOCUSED = """() => {
    const e = document.activeElement;
    if (!e || e === document.body) return null;
    const style = getComputedStyle(e), box = e.getBoundingClientRect();
    const labels = e.labels && e.labels.length ? [...e.labels].map(l => l.textContent.trim()).join(' ') : '';
    return {id: e.id, tag: e.tagName.toLowerCase(),
            name: (e.getAttribute('aria-label') || labels || e.textContent || e.title || '').trim(),
            focusVisible: e.matches(':focus-visible'), outline: style.outlineStyle,
            outlineWidth: parseFloat(style.outlineWidth) || 0,
            inView: box.width > 0 && box.height > 0 && box.bottom > 0 && box.top < innerHeight};
}"""


def test_logs_tab_order_reaches_the_toggle_the_filters_and_every_detail_button(gateway, ui, made_key):
    """Keyboard only: from the top of the logs page, Tab reaches the live-tail toggle, each filter and its
    button, then every row's detail button, in that order; each shows a visible focus ring (the UI's
    ``:focus-visible`` outline), is on screen when focused, and has an accessible name."""
    page = ui.page
    sign_in(page, gateway.url)
    page.goto(gateway.url + "/ui/logs")
    buttons = page.locator("#logs-table tbody button")
    assert buttons.count() >= 2
    reached: list[dict] = []
    for _ in range(150):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused is None:  # past the last control
            break
        if reached and focused["id"] == reached[-1]["id"] and focused["name"] == reached[-1]["name"]:
            continue  # a date input's day / month / year parts: one control
        reached.append(focused)
        if focused["name"] in ("Older requests", "Newest") or focused["id"] == "detail":
            break
    for control in reached:
        assert control["name"], control
        assert control["focusVisible"] and control["outline"] != "none" and control["outlineWidth"] >= 2, control
        assert control["inView"], control
    ids = [c["id"] for c in reached]
    names = [c["name"] for c in reached]
    expected = ["tail-toggle", "logs-key", "logs-team", "logs-user", "logs-model", "logs-status", "logs-start",
                "logs-end"]
    positions = [ids.index(i) for i in expected]
    assert positions == sorted(positions) and positions == list(range(positions[0], positions[0] + len(expected)))
    assert names[positions[-1] + 1] == "Filter"
    details = [n for n in names if n.startswith("Details of request ")]
    assert details == [buttons.nth(i).get_attribute("aria-label") for i in range(buttons.count())]
    assert names.index(details[0]) == positions[-1] + 2  # the rows come right after the filters
    # the names are the ones assistive technology gets (the browser's own accessible-name computation)
    assert page.get_by_role("button", name="Start live tail", exact=True).count() == 1
    for label in ("Key (sk-… or hash)", "Team ID", "User ID", "Model", "Status", "From", "To"):
        assert page.get_by_label(label, exact=True).count() == 1, label
    assert page.get_by_role("button", name=details[0], exact=True).count() == 1
    # and the keyboard works them: the toggle starts and stops the tail, a detail button opens its panel
    page.locator("#tail-toggle").focus()
    page.keyboard.press("Enter")
    page.get_by_text("Connected: new requests appear here.").wait_for()
    assert page.locator("#tail-toggle").get_attribute("aria-pressed") == "true"
    page.keyboard.press("Enter")
    page.get_by_text("Stopped.").wait_for()
    buttons.first.focus()
    page.keyboard.press("Space")
    page.locator("#detail").get_by_text("Request ").first.wait_for()


def test_usage_shows_the_spend_and_the_csv_reconciles(gateway, ui, made_key):
    page = ui.page
    sign_in(page, gateway.url)
    page.goto(gateway.url + "/ui/usage?group_by=key")
    rows = spend_logs_for(gateway, made_key["token"])
    with admin_api(gateway) as api:
        everything = api.get("/spend/logs", params={"page_size": 1000}).json()["data"]
    today = datetime.now(UTC).date().isoformat()  # the gateway's ui_timezone is UTC (the default)
    todays = [r for r in everything if r["start_time"].startswith(today)]
    assert page.locator("#usage-total-requests").inner_text() == str(len(everything))
    assert page.locator("#usage-groups").get_by_text("data-pages-key").count() == 1
    assert page.locator("#chart-daily canvas").count() == 1  # the chart drew (its table is the other view)
    ui.screenshot("usage")

    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV").click()
    text = Path(info.value.path()).read_text(encoding="utf-8")
    lines = list(csv.DictReader(io.StringIO(text)))
    day_rows = [r for r in lines if r["day"] == today]
    assert sum(int(r["requests"]) for r in day_rows) == len(todays)
    assert math.fsum(float(r["spend"]) for r in day_rows) == pytest.approx(math.fsum(r["spend"] for r in todays),
                                                                           abs=1e-12)
    mine = [r for r in day_rows if r["key"] == made_key["token"]]
    assert mine and mine[0]["key_alias"] == "data-pages-key"
    assert int(mine[0]["requests"]) == len([r for r in rows if r["start_time"].startswith(today)])

    # bad input: the page says what is wrong, with a 400
    answer = page.goto(gateway.url + "/ui/usage?start=yesterday")
    assert answer is not None and answer.status == 400
    assert "start must be a date (YYYY-MM-DD)" in page.content()
    ui.allow(r"400 \(Bad Request\)")


def test_overview_audit_and_guardrails_cache_pages(gateway, ui, made_key):
    page = ui.page
    sign_in(page, gateway.url)
    page.get_by_role("link", name="Overview").click()
    today = page.locator("#period-1")
    requests = int(today.locator("dt:text-is('Requests') + dd").inner_text())
    assert requests >= 2
    assert page.locator("#deployments").get_by_text("openai-model").count() >= 1
    ui.screenshot("overview")

    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Object ID").fill(made_key["token"])
    page.get_by_role("button", name="Filter").click()
    row = page.locator("#audit-table-rows tbody tr").first
    assert "created" in row.inner_text() and "keys" in row.inner_text()
    row.get_by_text("Before and after").click()
    ui.screenshot("audit")
    assert made_key["raw"] not in page.content()

    page.get_by_role("link", name="Guardrails & cache").click()
    assert page.locator("#guardrails").get_by_text("no-secrets").count() == 1
    assert int(page.locator("#cache-lookups dt:text-is('miss') + dd").inner_text()) >= 1
    ui.screenshot("guardrails-cache")


def test_playground_streams_an_answer(gateway, ui, made_key):
    page = ui.page
    sign_in(page, gateway.url)
    page.get_by_role("link", name="Playground").click()
    page.get_by_label("API key").fill(made_key["raw"])
    page.get_by_label("Model").select_option("openai-model")
    page.get_by_label("Message", exact=True).fill("Say something")
    with page.expect_request(re.compile(r".*/v1/chat/completions$")) as sent:
        page.get_by_role("button", name="Send").click()
    assert made_key["raw"] not in sent.value.url
    assert sent.value.headers["authorization"] == f"Bearer {made_key['raw']}"
    page.get_by_text(re.compile(r"^Done")).wait_for()
    answer = page.locator("#answer").inner_text()
    assert answer.strip() != ""
    ui.screenshot("playground")
    page.get_by_label("API key").fill("sk-not-a-key")
    page.get_by_role("button", name="Send").click()
    page.get_by_text(re.compile(r"^Error: ")).wait_for()
    ui.allow(r"401 \(Unauthorized\)")  # the refused key's answer, shown to the user on purpose


def test_an_internal_user_sees_only_their_own_requests(gateway, ui, made_key):
    with admin_api(gateway) as api:
        made = api.post("/user/new", json={"user_id": "ines", "user_role": "internal_user",
                                           "password": "ines-password"})
        assert made.status_code == 200, made.text
        own = api.post("/key/generate", json={"user_id": "ines", "key_alias": "ines-key"}).json()
    assert ask(gateway, own["key"], "mine") != ""
    wait_for(lambda: spend_logs_for(gateway, own["key"]), "her spend row")
    page = ui.page
    page.goto(gateway.url + "/ui/login")
    page.get_by_label("User name", exact=True).fill("ines")
    page.get_by_label("Password", exact=True).fill("ines-password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("link", name="Logs").click()
    table = page.locator("#logs-table")
    assert table.get_by_text("ines-key").count() == 1
    assert table.get_by_text("data-pages-key").count() == 0  # the admin's key's requests are not hers
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Audit log").count() == 0
    assert nav.get_by_role("link", name="Guardrails & cache").count() == 0
    page.get_by_role("link", name="Usage").click()
    assert page.locator("#usage-total-requests").inner_text() == "1"
    page.get_by_role("link", name="Overview").click()
    assert page.locator("#deployments").count() == 0
    # another user's request detail is not hers to read: the API's own 404
    other = spend_logs_for(gateway, made_key["token"])[0]["request_id"]
    answer = page.goto(gateway.url + f"/ui/logs/request/{other}")
    assert answer is not None and answer.status == 404
    ui.allow(r"404 \(Not Found\)")
    ui.allow(rf"/ui/logs/request/{other}")
