"""The admin UI in a real browser (Playwright + Debian's Chromium): master-key sign-in, a key created in
the UI and used through the OpenAI SDK, blocked in the UI and refused, regenerated, deleted; the key page's
page-size cap and search; keyboard access."""

from __future__ import annotations

import re

import httpx
import openai
import pytest

from tests import ui_browser
from tests.conftest import MASTER_KEY, gateway_config, start_gateway

browser, ui = ui_browser.browser, ui_browser.ui  # fixtures


@pytest.fixture(scope="module")
def gateway(mocks, tmp_path_factory):
    gw = start_gateway(gateway_config(mocks), tmp_path_factory.mktemp("ui-keys"))
    yield gw
    gw.process.terminate()
    gw.process.wait(10)


def sign_in_with_master_key(page, base: str) -> None:
    page.goto(base + "/ui/")
    assert page.url.endswith("/ui/login")
    page.get_by_label("Master key", exact=True).fill(MASTER_KEY)
    page.get_by_role("button", name="Sign in with the master key").click()
    page.wait_for_url(re.compile(r".*/ui/keys$"))


def admin_api(gateway) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=20)


def chat(gateway, key: str) -> str:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=20)
    answer = client.chat.completions.create(model="openai-model", messages=[{"role": "user", "content": "hi"}])
    return answer.choices[0].message.content or ""


def test_master_key_sign_in_sets_a_safe_session_cookie(gateway, ui):
    page = ui.page
    sign_in_with_master_key(page, gateway.url)
    assert page.get_by_role("heading", name="Virtual keys").is_visible()
    (cookie,) = [c for c in ui.context.cookies() if c["name"] == "lockgate_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/ui"
    assert not cookie["secure"]  # plain HTTP here; behind TLS see test_secure_cookie_behind_a_tls_proxy


def test_a_key_made_in_the_ui_works_and_blocking_it_in_the_ui_refuses_it(gateway, ui):
    page = ui.page
    sign_in_with_master_key(page, gateway.url)
    page.get_by_role("link", name="Create key").click()
    page.get_by_label("Alias").fill("ui-made-key")
    page.get_by_label("Models").select_option(["openai-model"])
    page.get_by_label("Max budget (USD)").fill("10")
    page.get_by_label("Tags").fill("team-a, ui")
    page.get_by_label("Expires after").fill("30d")
    ui.screenshot("key-create")
    page.get_by_role("button", name="Create key").click()
    raw = page.get_by_label("The new key").input_value()
    assert raw.startswith("sk-") and "Copy this key now" in page.content()
    assert raw not in page.url
    ui.screenshot("key-created")

    assert chat(gateway, raw) != ""

    # the key's page: its settings, as stored
    page.get_by_role("link", name="Open the key's settings").click()
    assert page.get_by_label("Alias").input_value() == "ui-made-key"
    assert page.get_by_label("Tags").input_value() == "team-a, ui"
    assert raw not in page.content()  # shown once only
    ui.screenshot("key-detail")
    page.get_by_role("button", name="Block key").click()
    page.get_by_role("button", name="Unblock key").wait_for()
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, raw)
    page.get_by_role("button", name="Unblock key").click()
    page.get_by_role("button", name="Block key").wait_for()
    assert chat(gateway, raw) != ""

    # edit: a budget change reaches the API's record
    page.get_by_label("Max budget (USD)").fill("3.5")
    page.get_by_role("button", name="Save changes").click()
    page.get_by_text("Saved.").wait_for()
    with admin_api(gateway) as api:
        info = api.get("/key/info", params={"key": raw}).json()["info"]
    assert info["max_budget"] == 3.5 and info["key_alias"] == "ui-made-key"
    assert info["metadata"]["tags"] == ["team-a", "ui"]

    # regenerate: the old key stops, the new one (shown once) works
    page.get_by_role("button", name="Regenerate key").click()
    fresh = page.get_by_label("The new key").input_value()
    assert fresh != raw
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, raw)
    assert chat(gateway, fresh) != ""

    page.get_by_role("link", name="Open the key's settings").click()
    page.get_by_role("button", name="Delete key").click()
    page.wait_for_url(re.compile(r".*/ui/keys\?deleted=1$"))
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, fresh)


def test_the_key_list_caps_its_page_size_and_searches(gateway, ui):
    with admin_api(gateway) as api:
        for i in range(105):
            assert api.post("/key/generate", json={"key_alias": f"bulk-{i:03d}"}).status_code == 200
    page = ui.page
    sign_in_with_master_key(page, gateway.url)
    page.goto(gateway.url + "/ui/keys?page_size=100000")
    assert page.locator("#key-table tbody tr").count() == 100
    assert "at most 100 keys" in page.content()
    # search (htmx: the table is replaced in place, the URL follows)
    page.get_by_label("Search").fill("bulk-07")
    page.wait_for_url(re.compile(r".*q=bulk-07.*"))
    page.locator("#key-table caption", has_text="10 keys").wait_for()
    aliases = page.locator("#key-table tbody tr td:first-child").all_inner_texts()
    assert sorted(aliases) == [f"bulk-07{i}" for i in range(10)]
    page.get_by_label("Search").fill("")
    page.get_by_label("Per page").select_option("10")
    page.locator("#key-table caption", has_text="page 1 of").wait_for()
    page.get_by_role("link", name="Next page").click()
    page.locator("#key-table caption", has_text="page 2 of").wait_for()
    assert page.locator("#key-table tbody tr").count() == 10
    page.goto(gateway.url + "/ui/keys?page_size=10")
    ui.screenshot("keys")


def test_mutations_need_the_session_csrf_token(gateway, ui):
    page = ui.page
    sign_in_with_master_key(page, gateway.url)
    before = page.request.get(gateway.url + "/key/list", headers={"Authorization": f"Bearer {MASTER_KEY}"}).json()
    missing = page.request.post(gateway.url + "/ui/keys/new", form={"key_alias": "csrf-less"})
    wrong = page.request.post(gateway.url + "/ui/keys/new", form={"key_alias": "csrf-wrong", "csrf_token": "nope"})
    wrong_header = page.request.post(gateway.url + "/ui/keys/new", form={"key_alias": "csrf-hdr"},
                                     headers={"X-CSRF-Token": "nope", "HX-Request": "true"})
    assert missing.status == wrong.status == wrong_header.status == 403
    assert "CSRF token missing or wrong" in missing.text()
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    good = page.request.post(gateway.url + "/ui/keys/new", form={"key_alias": "csrf-ok"},
                             headers={"X-CSRF-Token": token})
    assert good.status == 200 and "Copy this key now" in good.text()
    after = page.request.get(gateway.url + "/key/list", headers={"Authorization": f"Bearer {MASTER_KEY}"}).json()
    assert after["total_count"] == before["total_count"] + 1


def test_every_answer_carries_the_security_headers_and_static_files_are_cached(gateway):
    with httpx.Client(base_url=gateway.url) as client:
        login = client.get("/ui/login")
        assert login.status_code == 200
        csp = login.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert login.headers["x-content-type-options"] == "nosniff"
        assert login.headers["cache-control"] == "no-store"
        assert "<script>" not in login.text and " style=" not in login.text  # nothing inline
        asset = re.search(r'src="(/ui/static/vendor/htmx-[^"]+)"', login.text).group(1)
        answer = client.get(asset)
        assert answer.status_code == 200 and "immutable" in answer.headers["cache-control"]
        assert answer.headers["content-type"].startswith("text/javascript")
        assert client.get("/ui/static/../../app.py").status_code == 404
        assert client.get("/ui/keys", follow_redirects=False).headers["location"] == "/ui/login"


def test_secure_cookie_behind_a_tls_proxy(gateway):
    """Behind a TLS-terminating proxy on an allowed address (uvicorn's FORWARDED_ALLOW_IPS: 127.0.0.1
    here), X-Forwarded-Proto: https makes the cookie Secure."""
    with httpx.Client(base_url=gateway.url, headers={"X-Forwarded-Proto": "https"}) as client:
        form = client.get("/ui/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        login_cookie = form.headers["set-cookie"]
        assert "; Secure" in login_cookie
        client.cookies.clear()  # httpx keeps Secure cookies for https URLs: send it as the browser would
        signed = client.post("/ui/login", data={"csrf_token": token, "method": "master_key",
                                                "master_key": MASTER_KEY}, follow_redirects=False,
                             headers={"Cookie": login_cookie.split(";")[0]})
    assert signed.status_code == 303
    cookie = next(v for v in signed.headers.get_list("set-cookie") if v.startswith("lockgate_session="))
    assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_sign_out_revokes_the_session(gateway, ui):
    page = ui.page
    sign_in_with_master_key(page, gateway.url)
    cookie = next(c for c in ui.context.cookies() if c["name"] == "lockgate_session")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/ui/login$"))
    replay = httpx.get(gateway.url + "/ui/keys", cookies={"lockgate_session": cookie["value"]},
                       follow_redirects=False)
    assert replay.status_code == 303 and replay.headers["location"] == "/ui/login"


def test_keyboard_reaches_the_main_controls(gateway, ui):
    page = ui.page
    page.goto(gateway.url + "/ui/login")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "master-key":
            break
    assert page.evaluate("document.activeElement.id") == "master-key"
    page.keyboard.type(MASTER_KEY)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/ui/keys$"))
    reached = []
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("(document.activeElement.textContent || '').trim() || document.activeElement.id"))
        if reached[-1] == "key-search":
            break
    assert reached[:3] == ["Skip to content", "Lockgate", "Virtual keys"]
    assert "Sign out" in reached and "Create key" in reached and reached[-1] == "key-search"
    page.keyboard.type("nothing-matches-this")
    page.locator("#key-table caption", has_text="0 keys").wait_for()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # "Create key", reached by keyboard
    page.wait_for_url(re.compile(r".*/ui/keys/new$"))


# the form controls of a page with no accessible name (no label, aria-label(ledby), text or title)
UNNAMED_CONTROLS = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                 && !e.getAttribute('aria-labelledby') && !(e.tagName === 'BUTTON' && e.textContent.trim())
                 && !e.title)
    .map(e => e.outerHTML.slice(0, 120))"""


def test_every_page_in_the_registry_loads_cleanly(gateway, ui):
    """Each page of ``ui/pages/__init__.py: NAMES`` (the navigation) renders for an admin with no console
    error, failed request or server error, and every navigation link has an accessible name."""
    from lockgate.ui.pages import NAMES

    page = ui.page
    sign_in_with_master_key(page, gateway.url)
    links = page.get_by_role("navigation", name="Main").get_by_role("link")
    assert links.count() == len(NAMES)
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    for href in hrefs:
        answer = page.goto(gateway.url + href)
        assert answer.status == 200, href
        page.wait_for_load_state("networkidle")
        assert page.locator("h1").count() >= 1, href
        unnamed = page.evaluate(UNNAMED_CONTROLS)
        assert unnamed == [], (href, unnamed)
