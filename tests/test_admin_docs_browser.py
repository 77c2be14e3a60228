"""The management API's Swagger UI (``GET /docs``, admin/docs.py) in a real browser: it loads only
bundled assets, reads ``/openapi.json`` and shows every route with its request schema."""

from __future__ import annotations

from tests import ui_browser

browser, ui = ui_browser.browser, ui_browser.ui  # fixtures


def test_swagger_ui_lists_every_route_and_its_body(gateway, ui) -> None:  # noqa: ANN001
    spec = ui.page.request.get(gateway.url + "/openapi.json").json()
    operations = [(m, p) for p, item in spec["paths"].items() for m in item]
    assert len(operations) >= 40 and spec["openapi"].startswith("3.1")
    requests: list[str] = []
    ui.page.on("request", lambda r: requests.append(r.url))
    ui.page.goto(gateway.url + "/docs")
    ui.page.wait_for_selector(".opblock")
    assert ui.page.locator(".opblock").count() == len(operations)
    assert all(url.startswith(gateway.url) for url in requests), requests  # nothing from a CDN
    generate = ui.page.locator(".opblock-post", has_text="/key/generate").first
    generate.locator(".opblock-summary").click()
    generate.get_by_text("Schema", exact=True).first.click()
    body = generate.locator(".opblock-body").inner_text()
    assert "key_alias" in body and "max_budget" in body
    listing = ui.page.locator(".opblock-get", has_text="/key/list").first
    listing.locator(".opblock-summary").click()
    params = listing.locator(".parameters").inner_text()
    assert "page_size" in params and "return_full_object" in params
