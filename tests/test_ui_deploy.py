"""The admin UI as deployed: under a path prefix (SERVER_ROOT_PATH), turned off (general_settings.ui: false),
on several instances sharing PostgreSQL + Redis (sessions, sign-out and the sign-in rate limit are shared),
and signing in with SSO through a real OpenID Connect provider (tests/oidc_provider.py) in the browser."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from tests import oidc_provider, ui_browser
from tests.conftest import MASTER_KEY, gateway_config, start_gateway
from tests.test_admin_support import postgres_database
from tests.test_governance_e2e import REDIS_URL

browser, ui = ui_browser.browser, ui_browser.ui  # fixtures


def stop(*gateways) -> None:
    for gw in gateways:
        gw.process.terminate()
    for gw in gateways:
        gw.process.wait(10)


def master_sign_in(client: httpx.Client, base: str, prefix: str = "") -> httpx.Response:
    form = client.get(base + prefix + "/ui/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    return client.post(base + prefix + "/ui/login", data={"csrf_token": token, "method": "master_key",
                                                          "master_key": MASTER_KEY}, follow_redirects=False)


def test_the_ui_works_under_a_root_path(mocks, tmp_path, ui):
    gw = start_gateway(gateway_config(mocks), tmp_path, {"SERVER_ROOT_PATH": "/llm-gw/"})
    try:
        page = ui.page
        page.goto(gw.url + "/llm-gw/ui/")
        assert page.url == gw.url + "/llm-gw/ui/login"
        page.get_by_label("Master key", exact=True).fill(MASTER_KEY)
        page.get_by_role("button", name="Sign in with the master key").click()
        page.wait_for_url(gw.url + "/llm-gw/ui/keys")
        (cookie,) = [c for c in ui.context.cookies() if c["name"] == "lockgate_session"]
        assert cookie["path"] == "/llm-gw/ui"
        hrefs = page.eval_on_selector_all("a[href], link[href], script[src], form[action]",
                                          "els => els.map(e => e.getAttribute('href') || e.getAttribute('src') "
                                          "|| e.getAttribute('action'))")
        local = [h for h in hrefs if h.startswith("/")]
        assert local and all(h.startswith("/llm-gw/ui") for h in local), local
        page.get_by_role("link", name="Teams").click()
        page.wait_for_url(gw.url + "/llm-gw/ui/teams")
        # a proxy that strips the prefix: the same UI answers at /ui, its links keep the prefix
        stripped = httpx.get(gw.url + "/ui/login")
        assert stripped.status_code == 200 and 'action="/llm-gw/ui/login"' in stripped.text
    finally:
        stop(gw)


def test_general_settings_ui_false_turns_it_off(mocks, tmp_path):
    cfg = gateway_config(mocks)
    cfg["general_settings"]["ui"] = False
    gw = start_gateway(cfg, tmp_path)
    try:
        for path in ("/ui", "/ui/", "/ui/login", "/ui/static/ui.js"):
            assert httpx.get(gw.url + path).status_code == 404, path
        assert httpx.get(gw.url + "/key/list", headers={"Authorization": f"Bearer {MASTER_KEY}"}).status_code == 200
    finally:
        stop(gw)


@pytest.fixture
def two_instances(mocks, tmp_path):
    with postgres_database() as database_url:  # (its own thread: the browser's loop runs in this one)
        cfg = gateway_config(mocks)
        cfg["general_settings"].update(database_url=database_url, redis_url=REDIS_URL)
        cfg["lockgate_settings"] = {"governance": {"redis_key_prefix": f"lockgate-ui-{uuid.uuid4().hex[:8]}:"}}
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        first = start_gateway(cfg, tmp_path / "a")
        second = start_gateway(cfg, tmp_path / "b")
        yield first, second
        stop(first, second)


def test_instances_share_sessions_and_the_sign_in_limit(two_instances):
    first, second = two_instances
    with httpx.Client(timeout=20) as client:
        assert master_sign_in(client, first.url).status_code == 303
        cookie = client.cookies["lockgate_session"]
    on_second = httpx.get(second.url + "/ui/keys", cookies={"lockgate_session": cookie}, follow_redirects=False)
    assert on_second.status_code == 200 and "Virtual keys" in on_second.text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', on_second.text).group(1)
    made = httpx.post(second.url + "/ui/keys/new", cookies={"lockgate_session": cookie},
                      data={"csrf_token": csrf, "key_alias": "made-on-b"})
    assert made.status_code == 200 and "Copy this key now" in made.text
    assert "made-on-b" in httpx.get(first.url + "/ui/keys", cookies={"lockgate_session": cookie}).text
    # signing out on one instance ends the session on every instance
    out = httpx.post(second.url + "/ui/logout", cookies={"lockgate_session": cookie}, data={"csrf_token": csrf},
                     follow_redirects=False)
    assert out.status_code == 303
    gone = httpx.get(first.url + "/ui/keys", cookies={"lockgate_session": cookie}, follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"] == "/ui/login"
    # failures on one instance count on the other (Redis)
    with httpx.Client(timeout=20) as client:
        for base in (first.url, second.url, first.url, second.url, first.url):
            form = client.get(base + "/ui/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
            wrong = client.post(base + "/ui/login", data={"csrf_token": token, "method": "password",
                                                          "username": "shared-user", "password": "wrong-password"})
            assert wrong.status_code == 401
        form = client.get(second.url + "/ui/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        limited = client.post(second.url + "/ui/login", data={"csrf_token": token, "method": "password",
                                                              "username": "shared-user", "password": "x" * 9})
        assert limited.status_code == 429 and "Too many failed sign-ins" in limited.text


def test_sign_in_with_sso_in_the_browser(mocks, tmp_path, ui):
    provider = oidc_provider.start(users={"sam": {"email": "sam@example.com", "role": "admin"}})
    cfg = gateway_config(mocks)
    cfg["general_settings"]["sso"] = {"issuer": provider.issuer, "client_id": oidc_provider.CLIENT_ID,
                                      "client_secret": oidc_provider.CLIENT_SECRET,
                                      "allowed_email_domains": ["example.com"],
                                      "role_mappings": {"admin": "proxy_admin"}}
    gw = start_gateway(cfg, tmp_path)
    provider.redirect_uris = [gw.url + "/sso/callback"]
    provider.login_as("sam")
    try:
        page = ui.page
        page.goto(gw.url + "/ui/login")
        page.get_by_role("link", name="Sign in with SSO").click()
        page.wait_for_url(re.compile(r".*/ui/keys$"))
        header = page.locator("header").inner_text()
        assert "proxy_admin" in header
        (cookie,) = [c for c in ui.context.cookies() if c["name"] == "lockgate_session"]
        assert cookie["httpOnly"] and cookie["path"] == "/ui"
        page.get_by_role("link", name="Users").click()
        assert page.locator("#users-table").inner_text().count("sam") >= 1
    finally:
        stop(gw)
        provider.stop()


LAZY_CHECK = r'''
import asyncio, sys, orjson
from lockgate import config
from lockgate.app import App

async def call(app, method, path, body=b""):
    sent = []
    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}
    async def send(message):
        sent.append(message)
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"authorization", b"Bearer sk-lazy-master")],
             "client": ("127.0.0.1", 1), "scheme": "http", "root_path": ""}
    await app(scope, receive, send)
    return sent[0]["status"]

async def main(database):
    settings = config.from_dict({
        "model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m", "mock_response": "hi"}}],
        "general_settings": {"master_key": "sk-lazy-master"},
        "lockgate_settings": {"database_path": database}})
    app = App(settings)
    gateway = app.start()
    await gateway.start()
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    for _ in range(20):
        assert await call(app, "POST", "/v1/chat/completions", body) == 200
    assert app.ui is None and "lockgate.ui.app" not in sys.modules and "jinja2" not in sys.modules
    assert await call(app, "GET", "/ui/login") == 200
    assert app.ui is not None and "jinja2" in sys.modules
    await gateway.close()
    print("lazy ok")

asyncio.run(main(sys.argv[1]))
'''


def test_the_ui_costs_the_model_routes_nothing_until_it_is_used(tmp_path):
    """With the UI on (the default) but unused, model requests never build it nor import its libraries."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LAZY_CHECK, str(tmp_path / "lazy.db")], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)  # (the spend journal goes to the working directory)
    assert done.returncode == 0 and "lazy ok" in done.stdout, done.stdout + done.stderr


def test_a_session_ends_at_ui_session_duration(mocks, tmp_path):
    cfg = gateway_config(mocks)
    cfg["general_settings"]["ui_session_duration"] = "2s"
    gw = start_gateway(cfg, tmp_path)
    try:
        with httpx.Client(base_url=gw.url, timeout=20) as client:
            signed = master_sign_in(client, gw.url)
            assert "Max-Age=2;" in signed.headers["set-cookie"]
            assert client.get("/ui/keys", follow_redirects=False).status_code == 200
            import time

            time.sleep(2.2)
            expired = client.get("/ui/keys", cookies={"lockgate_session": client.cookies["lockgate_session"]},
                                 follow_redirects=False)
            assert expired.status_code == 303 and expired.headers["location"] == "/ui/login"
    finally:
        stop(gw)


def test_a_master_key_session_ends_when_the_master_key_changes(mocks, tmp_path):
    """A session opened with the master key is bound to it: restarted on the same database with the same key
    the cookie still opens the UI; with another key it opens nothing (the sign-in page), and the new key
    signs in.  The session's row keeps a check of the key, never the key."""
    import sqlite3

    cfg = gateway_config(mocks)
    cfg["general_settings"]["database_url"] = f"sqlite:///{tmp_path / 'ui.db'}"

    def restart(master_key: str, name: str):
        cfg["general_settings"]["master_key"] = master_key
        (tmp_path / name).mkdir()
        return start_gateway(cfg, tmp_path / name)

    gw = restart(MASTER_KEY, "first")
    try:
        with httpx.Client(base_url=gw.url, timeout=20) as client:
            assert master_sign_in(client, gw.url).status_code == 303
            cookie = client.cookies["lockgate_session"]
            assert client.get("/ui/keys", follow_redirects=False).status_code == 200
    finally:
        stop(gw)
    with sqlite3.connect(tmp_path / "ui.db") as db:
        rows = db.execute("SELECT * FROM ui_sessions").fetchall()
        (check,) = db.execute("SELECT master_key_check FROM ui_sessions WHERE via = 'master_key'").fetchone()
    assert len(rows) == 1 and re.fullmatch(r"[0-9a-f]{64}", check)
    assert MASTER_KEY not in str(rows) and cookie not in str(rows)

    gw = restart(MASTER_KEY, "same-key")  # the same key: the session goes on
    try:
        with httpx.Client(base_url=gw.url, timeout=20) as client:
            assert client.get("/ui/keys", cookies={"lockgate_session": cookie},
                              follow_redirects=False).status_code == 200
    finally:
        stop(gw)

    new_key = "sk-test-another-master-key-98765"
    gw = restart(new_key, "new-key")
    try:
        with httpx.Client(base_url=gw.url, timeout=20) as client:
            for path in ("/ui/keys", "/ui/account", "/ui/"):
                refused = client.get(path, cookies={"lockgate_session": cookie}, follow_redirects=False)
                assert refused.status_code == 303 and refused.headers["location"] == "/ui/login", path
            forged = client.post("/ui/keys/new", cookies={"lockgate_session": cookie}, follow_redirects=False)
            assert forged.status_code == 303 and forged.headers["location"] == "/ui/login"
            assert master_sign_in(client, gw.url).status_code == 401  # the old key
            form = client.get("/ui/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
            signed = client.post("/ui/login", data={"csrf_token": token, "method": "master_key",
                                                    "master_key": new_key}, follow_redirects=False)
            assert signed.status_code == 303
            assert client.get("/ui/keys", follow_redirects=False).status_code == 200
    finally:
        stop(gw)


def test_ui_settings_are_validated():
    from lockgate import config

    base = {"model_list": [], "general_settings": {"ui_session_duration": "forever"}}
    with pytest.raises(config.ConfigError, match="ui_session_duration"):
        config.from_dict(base)
    settings = config.from_dict({"model_list": [], "general_settings": {"ui": False, "ui_session_duration": "30m"}})
    assert settings.ui is False and settings.ui_session_duration == "30m"
    assert not any("ui" in w for w in settings.warnings)


def test_x_forwarded_proto_counts_only_from_a_trusted_proxy(mocks, tmp_path):
    """FORWARDED_ALLOW_IPS names the proxies; here the test client (127.0.0.1) is not one of them, so its
    X-Forwarded-Proto: https is ignored and the cookie is not marked Secure."""
    gw = start_gateway(gateway_config(mocks), tmp_path, {"FORWARDED_ALLOW_IPS": "10.9.8.7"})
    try:
        with httpx.Client(base_url=gw.url, headers={"X-Forwarded-Proto": "https"}, timeout=20) as client:
            signed = master_sign_in(client, gw.url)
        assert signed.status_code == 303
        assert "Secure" not in signed.headers["set-cookie"]
    finally:
        stop(gw)


def test_the_shared_sign_in_limit_counts_a_burst_across_a_minutes_end(monkeypatch):
    """Redis counts failures per fixed minute; the limiter adds the last minute's share, so five
    failures straddling a minute's end still block (with one fixed minute they were 3 + 2).  Run on a
    loop of its own in a thread: this module's browser fixtures keep Playwright's loop on this one."""
    import asyncio
    import threading
    import types

    import redis.asyncio

    from lockgate.ui import sessions

    clock = [60.0 * 1_000_000 - 1.0]  # one second before a minute's end
    monkeypatch.setattr(sessions.time, "time", lambda: clock[0])
    outcome: list[BaseException | None] = []

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        prefix = f"lockgate-test-{uuid.uuid4().hex[:8]}:"
        gw = types.SimpleNamespace(redis=client, governance=types.SimpleNamespace(prefix=prefix))
        limiter = sessions.LoginLimiter(gw)  # type: ignore[arg-type]
        try:
            for _ in range(3):
                await limiter.fail("10.0.0.1", "someone")
            clock[0] += 2.0  # the next minute
            for _ in range(2):
                await limiter.fail("10.0.0.1", "someone")
            assert await limiter.blocked("10.0.0.2", "someone")  # five for this user in the last two seconds
            assert not await limiter.blocked("10.0.0.2", "someone-else")
            clock[0] += 60.0  # a minute later only the newer two count, scaled down
            assert not await limiter.blocked("10.0.0.2", "someone")
        finally:
            keys = [key async for key in client.scan_iter(prefix + "*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()

    def run() -> None:
        try:
            asyncio.run(scenario())
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert outcome, "the scenario did not finish"
    if outcome[0] is not None:
        raise outcome[0]
