"""The admin UI's sign-in and roles in a real browser: local users (UI_USERNAME / UI_PASSWORD, passwords set
through the API, TOTP), the sign-in rate limit, internal users who see only their own keys (a forged
request for another's key is refused), viewers who mutate nothing, and the teams / users / organizations /
models pages."""

from __future__ import annotations

import re
import time
import urllib.parse
import xml.etree.ElementTree as ET

import httpx
import pyotp
import pytest
import segno

from tests import ui_browser
from tests.conftest import MASTER_KEY, gateway_config, start_gateway
from tests.mocks import MOCK_API_KEY

browser, ui = ui_browser.browser, ui_browser.ui  # fixtures

ADMIN_PASSWORD = "first-admin-pass-1"


@pytest.fixture(scope="module")
def gateway(mocks, tmp_path_factory):
    gw = start_gateway(gateway_config(mocks), tmp_path_factory.mktemp("ui-roles"),
                       {"UI_USERNAME": "root-admin", "UI_PASSWORD": ADMIN_PASSWORD})
    with api(gw) as client:
        admin = client.get("/user/info", params={"user_id": "root-admin"})  # made at start-up
        assert admin.status_code == 200 and admin.json()["user_info"]["user_role"] == "proxy_admin"
        for user, role in (("alice", "internal_user"), ("bob", "internal_user"), ("vera", "proxy_admin_viewer"),
                           ("tina", "internal_user"), ("rita", "internal_user")):
            made = client.post("/user/new", json={"user_id": user, "user_role": role, "password": f"{user}-password"})
            assert made.status_code == 200, made.text
        assert client.post("/team/new", json={"team_id": "red", "team_alias": "Red team",
                                              "members_with_roles": [{"user_id": "tina", "role": "admin"},
                                                                     {"user_id": "bob", "role": "member"}]}
                           ).status_code == 200
    yield gw
    gw.process.terminate()
    gw.process.wait(10)


def api(gateway) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=20)


def sign_in(page, base: str, user: str, password: str, code: str | None = None) -> None:
    page.goto(base + "/ui/login")
    page.get_by_label("User name", exact=True).fill(user)
    page.get_by_label("Password", exact=True).fill(password)
    if code is not None:
        page.get_by_label("One-time code").fill(code)
    with page.expect_navigation():  # the answer to the POST (a redirect, or the form with its error)
        page.get_by_role("button", name="Sign in", exact=True).click()


def test_the_first_admin_from_ui_username_signs_in_with_a_password(gateway, ui):
    page = ui.page
    page.goto(gateway.url + "/ui/login")
    ui.screenshot("login")
    sign_in(page, gateway.url, "root-admin", ADMIN_PASSWORD)
    page.wait_for_url(re.compile(r".*/ui/keys$"))
    assert "root-admin" in page.locator("header").inner_text() and "proxy_admin" in page.locator("header").inner_text()
    with api(gateway) as client:
        assert client.get("/user/info", params={"user_id": "root-admin"}).json()["user_info"]["user_role"] == \
            "proxy_admin"


def test_a_wrong_password_is_refused_and_sign_ins_are_rate_limited(gateway, ui):
    page = ui.page
    ui.allow(r"status of 401")
    ui.allow(r"status of 429")
    for _ in range(5):
        sign_in(page, gateway.url, "rita", "not-her-password")
        assert page.get_by_role("alert").inner_text() == "Wrong user name, password or one-time code."
    sign_in(page, gateway.url, "rita", "rita-password")  # right, but too late
    assert "Too many failed sign-ins" in page.get_by_role("alert").inner_text()
    assert page.url.endswith("/ui/login")
    with httpx.Client(base_url=gateway.url) as client:  # the limit answers 429
        form = client.get("/ui/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        limited = client.post("/ui/login", data={"csrf_token": token, "method": "password", "username": "rita",
                                                 "password": "rita-password"})
        assert limited.status_code == 429
        # another user from the same address is not locked out by rita's failures
        form = client.get("/ui/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        other = client.post("/ui/login", data={"csrf_token": token, "method": "password", "username": "bob",
                                               "password": "bob-password"}, follow_redirects=False)
        assert other.status_code == 303


def next_code(totp: pyotp.TOTP) -> str:
    """The code of the next time step (each step's code is accepted once)."""
    step = int(time.time() // 30)
    while int(time.time() // 30) == step:
        time.sleep(0.25)
    return totp.now()


def qr_modules(src: str) -> list[list[bool]]:
    """The dark modules of a QR code drawn as segno draws one in SVG (one path: ``M``/``m`` moves, ``h`` runs
    of dark modules, one module per unit), read back from the ``data:`` URI of the page, quiet zone cut."""
    prefix = "data:image/svg+xml;charset=utf-8,"
    assert src.startswith(prefix)
    svg = urllib.parse.unquote(src[len(prefix):])
    assert "<script" not in svg and svg.count("<path") == 1
    root = ET.fromstring(svg)
    scale, size = int(re.fullmatch(r"scale\((\d+)\)", root[0].get("transform")).group(1)), int(root.get("width"))
    width = size // scale
    border = 4
    grid = [[False] * width for _ in range(width)]
    x = y = 0.0
    for op, a, b in re.findall(r"([MmHh])(-?[\d.]+)(?: (-?[\d.]+))?", root[0].get("d")):
        if op == "M":
            x, y = float(a), float(b)
        elif op == "m":
            x, y = x + float(a), y + float(b)
        else:
            for column in range(int(x), int(x + float(a))):
                grid[int(y)][column] = True
            x += float(a)
    assert not any(any(row) for row in grid[:border] + grid[width - border:])  # the quiet zone is light
    return [row[border:width - border] for row in grid[border:width - border]]


def test_a_local_user_with_totp(gateway, ui):
    page = ui.page
    ui.allow(r"status of 401")
    sign_in(page, gateway.url, "bob", "bob-password")
    page.wait_for_url(re.compile(r".*/ui/keys$"))
    page.get_by_role("link", name="My account").click()
    page.get_by_role("button", name="Set up two-factor sign-in").click()
    secret = page.locator("#totp-secret").inner_text()
    uri = page.locator("#totp-uri").inner_text()
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    # the QR code: an image with a name, drawn (the CSP let its data: URI load), of this very URI
    qr = page.get_by_role("img", name="QR code of the URI below, to scan with an authenticator app")
    assert qr.is_visible() and qr.evaluate("img => img.complete && img.naturalWidth") >= 100
    assert qr_modules(qr.get_attribute("src")) == [[bool(m) for m in row] for row in
                                                   segno.make(uri, error="m", micro=False).matrix]
    ui.screenshot("account-totp")
    totp = pyotp.TOTP(secret)
    page.get_by_label("Code from the app").fill(totp.now())
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    page.get_by_text("Two-factor sign-in is on.").wait_for()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/ui/login$"))

    sign_in(page, gateway.url, "bob", "bob-password")  # no code
    assert page.get_by_role("alert").inner_text() == "Wrong user name, password or one-time code."
    sign_in(page, gateway.url, "bob", "bob-password", "000000" if totp.now() != "000000" else "111111")
    assert page.get_by_role("alert").is_visible()
    # a code is accepted once: the next sign-in waits for the next 30-second step
    sign_in(page, gateway.url, "bob", "bob-password", next_code(totp))
    page.wait_for_url(re.compile(r".*/ui/keys$"))
    # turn it off again (a current code is needed): the other tests sign bob in with a password only
    page.get_by_role("link", name="My account").click()
    page.get_by_label("Current code").fill(next_code(totp))
    page.get_by_role("button", name="Turn off two-factor sign-in").click()
    page.get_by_text("Two-factor sign-in is off.").wait_for()
    with api(gateway) as client:
        logs = client.get("/audit/logs", params={"object_id": "bob", "table_name": "users"}).json()
    actions = [(e["action"], e["changed_by"]) for e in logs["data"]]
    assert ("totp_enabled", "bob") in actions and ("totp_disabled", "bob") in actions
    assert ("password_set", "master") in actions  # set through POST /user/new by the master key
    assert secret not in str(logs)


def _make_key_in_ui(page, base: str, alias: str) -> str:
    page.goto(base + "/ui/keys/new")
    page.get_by_label("Alias").fill(alias)
    page.get_by_role("button", name="Create key").click()
    page.get_by_label("The new key").wait_for()
    page.get_by_role("link", name="Open the key's settings").click()
    return page.url.rsplit("/", 1)[1]


def test_an_internal_user_sees_and_touches_only_their_own_keys(gateway, ui, browser):
    page = ui.page
    ui.allow(r"status of 403")
    sign_in(page, gateway.url, "alice", "alice-password")
    page.wait_for_url(re.compile(r".*/ui/keys$"))
    assert page.get_by_label("User ID", exact=True).count() == 1
    alice_token = _make_key_in_ui(page, gateway.url, "alice-key")
    with api(gateway) as client:
        assert client.get("/key/info", params={"key": alice_token}).json()["info"]["user_id"] == "alice"
    # the navigation shows what an internal user may use
    nav = page.get_by_role("navigation", name="Main").inner_text()
    assert "Virtual keys" in nav and "Users" not in nav and "Organizations" not in nav

    other = ui_browser.watch(browser)
    try:
        other.allow(r"status of 403")
        sign_in(other.page, gateway.url, "bob", "bob-password")
        other.page.wait_for_url(re.compile(r".*/ui/keys$"))
        listed = other.page.locator("#key-table tbody").inner_text()
        assert "alice-key" not in listed
        other.page.goto(gateway.url + "/ui/keys?user_id=alice")
        assert "alice-key" not in other.page.locator("#key-table tbody").inner_text()
        # bob opens alice's key by its token: refused by the API's own check
        response = other.page.goto(gateway.url + f"/ui/keys/{alice_token}")
        assert response.status == 403
        # a forged request with bob's own valid CSRF token: refused too, the key stays
        token = other.page.request.get(gateway.url + "/ui/keys").text()
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', token).group(1)
        for action in ("delete", "block", "regenerate"):
            forged = other.page.request.post(gateway.url + f"/ui/keys/{alice_token}/{action}",
                                             form={"csrf_token": csrf})
            assert forged.status == 403, action
        forged = other.page.request.post(gateway.url + f"/ui/keys/{alice_token}",
                                         form={"csrf_token": csrf, "key_alias": "stolen"})
        assert forged.status == 403
        # nor can bob create a key for alice
        forged = other.page.request.post(gateway.url + "/ui/keys/new",
                                         form={"csrf_token": csrf, "key_alias": "for-alice", "user_id": "alice"})
        assert forged.status == 403
        assert other.unexpected() == []
    finally:
        other.context.close()
    with api(gateway) as client:
        info = client.get("/key/info", params={"key": alice_token}).json()["info"]
    assert info["key_alias"] == "alice-key" and not info["blocked"]


def test_a_team_admin_manages_the_team_members(gateway, ui):
    page = ui.page
    sign_in(page, gateway.url, "tina", "tina-password")
    page.wait_for_url(re.compile(r".*/ui/keys$"))
    page.get_by_role("link", name="Teams").click()
    page.get_by_role("link", name="red").click()
    assert page.get_by_role("button", name="Save changes").count() == 0  # team settings: admins only
    page.get_by_label("User ID").fill("alice")
    page.get_by_role("button", name="Add member").click()
    page.locator("#members-table", has_text="alice").wait_for()
    page.get_by_role("button", name="Make alice an admin").click()
    page.locator("#members-table tr", has_text="alice").filter(has_text="admin").wait_for()
    page.get_by_role("button", name="Remove alice").click()
    page.get_by_text("Saved.").wait_for()
    assert "alice" not in page.locator("#members-table").inner_text()


def test_a_viewer_sees_everything_and_mutates_nothing(gateway, ui):
    with api(gateway) as client:
        token = client.post("/key/generate", json={"key_alias": "viewed-key"}).json()["token_id"]
    page = ui.page
    ui.allow(r"status of 403")
    sign_in(page, gateway.url, "vera", "vera-password")
    page.wait_for_url(re.compile(r".*/ui/keys$"))
    assert "viewed-key" in page.locator("#key-table").inner_text()
    assert page.get_by_role("link", name="Create key").count() == 0
    page.get_by_role("link", name="viewed-key").click()
    for name in ("Block key", "Delete key", "Regenerate key", "Save changes"):
        assert page.get_by_role("button", name=name).count() == 0
    assert page.get_by_label("Alias").is_disabled()
    page.get_by_role("link", name="Users").click()
    assert page.get_by_role("link", name="Create user").count() == 0
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    for path, form in ((f"/ui/keys/{token}/block", {}), (f"/ui/keys/{token}/delete", {}),
                       ("/ui/keys/new", {"key_alias": "viewer-key"}), ("/ui/users/new", {"user_id": "mallory"}),
                       ("/ui/teams/new", {"team_id": "viewer-team"}), ("/ui/users/id/alice/delete", {})):
        refused = page.request.post(gateway.url + path, form={"csrf_token": csrf, **form})
        assert refused.status == 403, path
    with api(gateway) as client:
        assert not client.get("/key/info", params={"key": token}).json()["info"]["blocked"]
        assert client.get("/user/info", params={"user_id": "mallory"}).status_code == 404


def test_admin_pages_teams_users_organizations_models(gateway, ui):
    page = ui.page
    sign_in(page, gateway.url, "root-admin", ADMIN_PASSWORD)
    page.wait_for_url(re.compile(r".*/ui/keys$"))
    # organizations
    page.get_by_role("link", name="Organizations").click()
    page.get_by_role("link", name="Create organization").click()
    page.get_by_label("Organization ID").fill("acme")
    page.get_by_label("Organization name").fill("Acme")
    page.get_by_label("Max budget (USD)").fill("500")
    page.get_by_role("button", name="Create organization").click()
    page.get_by_text("Organization created.").wait_for()
    page.get_by_role("link", name="Back to the list").click()
    ui.screenshot("organizations")
    # teams: create with budget, limits and models, then a member with a role
    page.get_by_role("link", name="Teams").click()
    page.get_by_role("link", name="Create team").click()
    page.get_by_label("Team ID").fill("blue")
    page.get_by_label("Team name").fill("Blue team")
    page.get_by_label("Organization ID").fill("acme")
    page.get_by_label("Models").select_option(["openai-model", "mock-model"])
    page.get_by_label("Max budget (USD)").fill("50")
    page.get_by_label("Requests per minute", exact=True).fill("60")
    page.get_by_role("button", name="Create team").click()
    page.get_by_text("Team created.").wait_for()
    page.get_by_label("User ID").fill("alice")
    page.get_by_label("Team role").select_option("admin")
    page.get_by_role("button", name="Add member").click()
    page.locator("#members-table", has_text="alice").wait_for()
    ui.screenshot("team-detail")
    page.get_by_label("Max budget (USD)").fill("75")
    page.get_by_role("button", name="Save changes").click()
    page.get_by_text("Saved.").wait_for()
    with api(gateway) as client:
        team = client.get("/team/info", params={"team_id": "blue"}).json()["team_info"]
    assert team["max_budget"] == 75 and team["rpm_limit"] == 60 and team["organization_id"] == "acme"
    assert sorted(team["models"]) == ["mock-model", "openai-model"]
    assert {"user_id": "alice", "role": "admin"} in [{k: m[k] for k in ("user_id", "role")}
                                                      for m in team["members_with_roles"]]
    page.get_by_role("link", name="Back to the list").click()
    ui.screenshot("teams")
    # users: create one with a password, who can then sign in
    page.get_by_role("link", name="Users").click()
    page.get_by_role("link", name="Create user").click()
    page.get_by_label("User ID").fill("dave")
    page.get_by_label("Email").fill("dave@example.com")
    page.get_by_label("Role").select_option("internal_user")
    page.get_by_label("Password").fill("dave-password")
    page.get_by_role("button", name="Create user").click()
    page.get_by_text("User created.").wait_for()
    page.get_by_role("link", name="Back to the list").click()
    ui.screenshot("users")
    with httpx.Client(base_url=gateway.url) as client:
        form = client.get("/ui/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        signed = client.post("/ui/login", data={"csrf_token": token, "method": "password", "username": "dave",
                                                "password": "dave-password"}, follow_redirects=False)
        assert signed.status_code == 303
    # models: deployments, prices and state, never a credential
    page.get_by_role("link", name="Models").click()
    table = page.locator("#models-table").inner_text()
    assert "openai-model" in table and "gpt-4o-mini" in table
    page.get_by_role("button", name="Check health now").click()
    page.locator("#models-table", has_text="healthy").wait_for()
    html = page.content()
    assert MOCK_API_KEY not in html and "TEST_PROVIDER_KEY" not in html
    ui.screenshot("models")
    page.get_by_role("link", name="My account").click()
    ui.screenshot("account")


def test_ids_with_a_slash_and_a_space_open_and_edit(gateway, ui):
    """Team, user and organization ids are one escaped path segment in the UI's URLs (``/`` as ``%2F``, under
    ``/id/``): their pages open, edit, add members and delete the right object, even an id ending in ``/delete``."""
    team_id, user_id, org_id, tricky = "ops/eu west", "eve/ops x", "acme/eu 1", "red/delete"
    with api(gateway) as client:
        assert client.post("/user/new", json={"user_id": user_id, "user_role": "internal_user"}).status_code == 200
        assert client.post("/organization/new", json={"organization_id": org_id,
                                                      "organization_alias": "Acme EU"}).status_code == 200
        for team in (team_id, tricky, "gone/soon x"):
            assert client.post("/team/new", json={"team_id": team}).status_code == 200
    page = ui.page
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, gateway.url, "root-admin", ADMIN_PASSWORD)
    page.wait_for_url(re.compile(r".*/ui/keys$"))

    # a team: from the list to its page (the id escaped in the URL), an edit, a member with such an id
    page.get_by_role("link", name="Teams").click()
    page.locator("#teams-table").get_by_role("link", name=team_id, exact=True).click()
    page.wait_for_url(re.compile(r".*/ui/teams/id/ops%2Feu%20west$"))
    page.get_by_role("heading", name=f"Team {team_id}").wait_for()
    page.get_by_label("Max budget (USD)").fill("42")
    page.get_by_role("button", name="Save changes").click()
    page.get_by_text("Saved.").wait_for()
    assert page.url.endswith("/ui/teams/id/ops%2Feu%20west?saved=1")
    page.get_by_label("User ID").fill(user_id)
    page.get_by_role("button", name="Add member").click()
    page.locator("#members-table", has_text=user_id).wait_for()
    page.get_by_role("button", name=f"Make {user_id} an admin").click()
    page.get_by_role("button", name=f"Make {user_id} a member").wait_for()
    with api(gateway) as client:
        team = client.get("/team/info", params={"team_id": team_id}).json()["team_info"]
    assert team["max_budget"] == 42
    assert [(m["user_id"], m["role"]) for m in team["members_with_roles"]] == [(user_id, "admin")]

    # a user: the list, the page, an edit, and the link to the team from there
    page.get_by_role("link", name="Users").click()
    page.locator("#users-table").get_by_role("link", name=user_id, exact=True).click()
    page.wait_for_url(re.compile(r".*/ui/users/id/eve%2Fops%20x$"))
    page.get_by_role("heading", name=f"User {user_id}").wait_for()
    page.get_by_label("Email").fill("eve@example.com")
    page.get_by_role("button", name="Save changes").click()
    page.get_by_text("Saved.").wait_for()
    with api(gateway) as client:
        assert client.get("/user/info", params={"user_id": user_id}).json()["user_info"]["user_email"] \
            == "eve@example.com"
    page.get_by_role("link", name=team_id, exact=True).click()
    page.get_by_role("heading", name=f"Team {team_id}").wait_for()
    page.get_by_role("button", name=f"Remove {user_id}").click()
    page.locator("#members-table", has_text="No members.").wait_for()

    # an organization
    page.get_by_role("link", name="Organizations").click()
    page.locator("#organizations-table").get_by_role("link", name=org_id, exact=True).click()
    page.wait_for_url(re.compile(r".*/ui/organizations/id/acme%2Feu%201$"))
    page.get_by_label("Max budget (USD)").fill("900")
    page.get_by_role("button", name="Save changes").click()
    page.get_by_text("Saved.").wait_for()

    # "red/delete" is a team of its own: saving it changes it, and team "red" is left alone
    page.goto(gateway.url + "/ui/teams/id/red%2Fdelete")
    page.get_by_role("heading", name=f"Team {tricky}").wait_for()
    page.get_by_label("Max budget (USD)").fill("7")
    page.get_by_role("button", name="Save changes").click()
    page.get_by_text("Saved.").wait_for()
    # and a delete deletes the team of the page
    page.goto(gateway.url + "/ui/teams/id/gone%2Fsoon%20x")
    page.get_by_role("button", name="Delete").click()
    page.get_by_text("The team was deleted.").wait_for()
    with api(gateway) as client:
        assert client.get("/organization/info", params={"organization_id": org_id}).json()["max_budget"] == 900
        assert client.get("/team/info", params={"team_id": tricky}).json()["team_info"]["max_budget"] == 7
        red = client.get("/team/info", params={"team_id": "red"})
        assert red.status_code == 200 and red.json()["team_info"]["max_budget"] != 7
        assert client.get("/team/info", params={"team_id": "gone/soon x"}).status_code == 404


def test_ids_literally_new_open_and_edit_and_the_create_forms_stay(gateway, ui):
    """A team, user and organization whose id is ``new`` open from their lists (detail pages live under
    ``/id/``, so no id is the creation form's ``/new``); they save, and the create forms still create."""
    with api(gateway) as client:
        assert client.post("/team/new", json={"team_id": "new", "team_alias": "Team called new"}).status_code == 200
        assert client.post("/user/new", json={"user_id": "new", "user_role": "internal_user"}).status_code == 200
        assert client.post("/organization/new", json={"organization_id": "new"}).status_code == 200
    page = ui.page
    sign_in(page, gateway.url, "root-admin", ADMIN_PASSWORD)
    page.wait_for_url(re.compile(r".*/ui/keys$"))
    for nav, table, heading, budget in (("Teams", "#teams-table", "Team Team called new", "11"),
                                        ("Users", "#users-table", "User new", "12"),
                                        ("Organizations", "#organizations-table", None, "13")):
        page.get_by_role("link", name=nav, exact=True).click()
        page.locator(table).get_by_role("link", name="new", exact=True).click()
        page.wait_for_url(re.compile(rf".*/ui/{nav.lower()}/id/new$"))
        if heading:
            page.get_by_role("heading", name=heading).wait_for()
        page.get_by_label("Max budget (USD)").fill(budget)
        page.get_by_role("button", name="Save changes").click()
        page.get_by_text("Saved.").wait_for()
        assert page.url.endswith(f"/ui/{nav.lower()}/id/new?saved=1")
    with api(gateway) as client:
        assert client.get("/team/info", params={"team_id": "new"}).json()["team_info"]["max_budget"] == 11
        assert client.get("/user/info", params={"user_id": "new"}).json()["user_info"]["max_budget"] == 12
        assert client.get("/organization/info", params={"organization_id": "new"}).json()["max_budget"] == 13
    # the creation form is still /new, and creates
    page.goto(gateway.url + "/ui/teams/new")
    page.get_by_role("heading", name="Create a team").wait_for()
    page.get_by_label("Team ID").fill("made-after-new")
    page.get_by_role("button", name="Create team").click()
    page.get_by_text("Team created.").wait_for()
    assert page.url.endswith("/ui/teams/id/made-after-new?created=1")
    # over HTTP too: the detail page of team "new" is that team, /ui/teams/new is the empty form
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=gateway.url, cookies=cookies, timeout=20) as client:
        detail = client.get("/ui/teams/id/new")
        form = client.get("/ui/teams/new")
    assert detail.status_code == 200 and "Team Team called new" in detail.text
    assert form.status_code == 200 and "Create a team" in form.text and "Team called new" not in form.text
