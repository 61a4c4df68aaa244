"""``AppHooks.nav_link``: an app's sidebar link, shown when its check passes; a failing check hides only the link."""
from __future__ import annotations

from crmkit.runtime.packages import AppHooks

from conftest import login


def test_nav_links_follow_their_visibility_check(app):
    hooks = AppHooks()
    shown = hooks.nav_link("crmkit_reports.reports_index", en="Shown link", zh="显示的链接", icon="star", visible=lambda services, actor: True)
    hooks.nav_link("crmkit_reports.reports_index", en="Hidden link", zh="隐藏的链接", icon="star", visible=lambda services, actor: False)

    def broken(services, actor):
        raise RuntimeError("boom")

    hooks.nav_link("crmkit_reports.reports_index", en="Broken link", zh="出错的链接", icon="star", visible=broken)
    assert hooks.nav_links[0] is shown and len(hooks.nav_links) == 3
    app.extensions["crmkit_nav_links"] = {"membership": hooks.nav_links}
    c = app.test_client()
    login(c)
    html = c.get("/home").get_data(as_text=True)
    assert "显示的链接" in html and "隐藏的链接" not in html and "出错的链接" not in html
    assert html.index("显示的链接") < html.index("/e/membership.member/")  # the app's links lead its group
