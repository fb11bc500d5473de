"""The launcher lists exactly the apps a person may open, by the gateway's own rule."""

from __future__ import annotations

from courtyard.contracts import AccessPolicy
from courtyard.iam import Principal
from courtyard.portal import LauncherApp, visible_apps


def fleet(portal) -> None:
    portal.add_app("expenses", "Expenses", "group:finance")
    portal.add_app("notes", "Notes", f"user:{portal.ADA}")
    portal.add_app("audit-board", "Audit board", "role:auditor")
    portal.add_app("handbook", "Handbook", public=True)
    portal.add_app("wiki", "Wiki")  # nobody is allowed, but Ada is a developer of it
    portal.add_app("payroll", "Payroll", "group:hr", "user:bob@example.com")


async def test_without_a_session_the_launcher_sends_to_login(portal):
    response = await portal.client().get("/")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/"


async def test_the_launcher_lists_exactly_the_permitted_apps_by_title(portal):
    fleet(portal)
    client = await portal.signed_in(portal.ADA)
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    page = portal.page(response)
    portal.assert_accessible(page)
    app_links = [link for link in page.links if link.startswith("/apps/")]
    assert app_links == [
        "/apps/audit-board/",
        "/apps/expenses/",
        "/apps/handbook/",
        "/apps/notes/",
        "/apps/wiki/",
    ]
    assert "Payroll" not in page.text
    assert "team-expenses" in page.text
    assert "production" in page.text
    # The header names the user and offers the account page and a sign-out button.
    assert "Ada Lovelace" in page.text
    assert "/account" in page.links
    assert "Sign out" in page.buttons
    assert "/logout" in page.forms


async def test_the_launcher_by_user_rule_and_escapes_names(portal):
    fleet(portal)
    client = await portal.signed_in(portal.BOB)
    response = await client.get("/")
    page = portal.page(response)
    assert [link for link in page.links if link.startswith("/apps/")] == [
        "/apps/handbook/",
        "/apps/payroll/",
    ]
    assert "Bob &lt;b&gt;Builder&lt;/b&gt;" in response.text  # autoescaped
    assert "<b>Builder" not in response.text


async def test_an_empty_launcher_says_so(portal):
    portal.add_app("payroll", "Payroll", "group:hr")
    client = await portal.signed_in(portal.BOB)
    page = portal.page(await client.get("/"))
    portal.assert_accessible(page)
    assert "There are no apps for you yet." in page.text


async def test_an_unsafe_link_is_shown_without_a_link(portal):
    portal.add_app("odd", "Odd", public=True, url="javascript:alert(1)")
    client = await portal.signed_in()
    response = await client.get("/")
    assert "Odd" in portal.page(response).text
    assert "javascript:" not in response.text


def test_visible_apps_is_the_admitting_rule():
    principal = Principal(
        kind="user",
        id="u_1",
        email="c@example.com",
        name="C",
        groups=("ops",),
        roles=(),
        app_roles={"b": ("viewer",)},
        auth="password",
        session_id="s_1",
    )

    def app(name: str, *allow: str, public: bool = False) -> LauncherApp:
        return LauncherApp(
            name,
            name.upper(),
            "team",
            "sandbox",
            f"/apps/{name}/",
            AccessPolicy(public=public, allow=list(allow)),
        )

    apps = [app("d"), app("c", "group:ops"), app("b"), app("a", public=True), app("e", "role:x")]
    assert [a.name for a in visible_apps(apps, principal)] == ["a", "b", "c"]
