"""The staff portal in a real browser (Debian's headless Chromium): a member signs in, the browser
keeps the session cookie as the gateway set it, a volunteer act is recorded through the form
(a write, so it carries the CSRF token), and signing out ends the session. Each view shows the
records it reads, the 双报到 and approval forms write what a member chose, and every view passes
axe-core's accessibility rules (WCAG 2.1 A and AA, and its best practices)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from shared.settings import local_today
from tests.conftest import COMMUNITY, new_id
from tests.support import eventually

pytestmark = pytest.mark.e2e

PASSWORD = "楼栋长-2026-micro-wish"
DEMO_PERSON = "p-zg-001"  # a cadre of 中观社区 in the demo data
# The gateway under a name that is not localhost: plain HTTP there is not a secure context.
PLAIN_HTTP_HOST = "portal.gridlink.test"
# Installed by `bootstrap.sh --browser` (as `make test` runs it).
AXE = Path(__file__).resolve().parents[2] / ".tools" / "npm" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not shutil.which("chromedriver"):
        pytest.fail("chromedriver is missing: `make test` installs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="gridlink-chromium-")
    # No network beyond localhost here: Chromium's own background traffic is switched off.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--host-resolver-rules=MAP {PLAIN_HTTP_HOST} 127.0.0.1",
        "--lang=zh-CN",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_window_size(1280, 900)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_script_errors(browser) -> Iterator[None]:
    """Each test fails on an error the portal's script threw (answers the gateway refused, which
    the console lists too, are the tests' business)."""
    browser.get_log("browser")  # what earlier tests left
    yield
    thrown = [entry["message"] for entry in browser.get_log("browser") if entry.get("source") == "javascript"]
    assert not thrown, thrown


def text_of(browser, element_id: str, containing: str, timeout: float = 15) -> str:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(browser, timeout).until(
            shown.text_to_be_present_in_element((By.ID, element_id), containing)
        )
    except TimeoutException:
        shows = browser.find_element(By.ID, element_id).text
        pytest.fail(f"#{element_id} never showed {containing!r}; it shows {shows!r}")
    return browser.find_element(By.ID, element_id).text


def text_at(browser, xpath: str) -> str:
    """The text of the element at `xpath`, read in the page in one go: a view that re-renders
    between finding an element from here and reading it leaves the element stale."""
    return browser.execute_script(
        "const node = document.evaluate(arguments[0], document, null,"
        " XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;"
        "return node ? node.innerText : '';",
        xpath,
    )


def open_signed_out(browser, url: str) -> None:
    """The portal at `url`, with no session left by an earlier test."""
    browser.get(url)
    browser.delete_all_cookies()
    browser.get(url)
    browser.refresh()


def sign_in_with(browser, username: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    text_of(browser, "gate", "登录")
    browser.find_element(By.ID, "sign-in-username").clear()
    browser.find_element(By.ID, "sign-in-username").send_keys(username)
    browser.find_element(By.ID, "sign-in-password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "#gate button[type=submit]").click()


def signed_in(browser, url: str, roles: list[str] | None = None, scope: str | None = None) -> str:
    """A fresh member with `roles` (within `scope`), signed in at `url`, the password already
    their own."""
    from gateway.staff import staff_accounts

    username = staff_accounts().create(
        new_id("portal").lower(), "周社工", PASSWORD, roles, scope, must_change_password=False
    )
    open_signed_out(browser, url)
    sign_in_with(browser, username, PASSWORD)
    text_of(browser, "sessionbar", username)
    return username


def test_a_member_signs_in_records_an_act_and_signs_out(stack, databases, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from gateway.staff import staff_accounts

    username = staff_accounts().create(
        new_id("portal").lower(), "李楼栋长", PASSWORD, must_change_password=False
    )
    open_signed_out(browser, f"{stack.base_url}/portal/#/register/{DEMO_PERSON}")

    sign_in_with(browser, username, "not-the-password")
    assert "用户名或密码错误" in text_of(browser, "gate", "用户名或密码错误")
    sign_in_with(browser, username, PASSWORD)
    assert f"李楼栋长（{username}）" in text_of(browser, "sessionbar", username)
    [cookie] = browser.get_cookies()  # the browser kept the Secure cookie on http://127.0.0.1
    assert cookie["name"] == "__Host-gridlink_session" and cookie["httpOnly"] and cookie["secure"]
    assert cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # out of the page's reach

    # The form, filled as a member would; the person comes from the route.
    eventually(lambda: browser.find_element(By.ID, "act-person").get_attribute("value") == DEMO_PERSON)
    browser.find_element(By.ID, "act-hours").send_keys("1.5")
    browser.execute_script("document.getElementById('act-date').value = arguments[0]", "2026-11-20")
    for select, value in (("act-type", "patrol_duty"), ("act-community", COMMUNITY)):
        Select(browser.find_element(By.ID, select)).select_by_value(value)
    browser.find_element(By.ID, "act-submit").click()
    act = eventually(
        lambda: databases["issue_intake"].volunteer_acts.find_one({"client_id": f"staff_{username}"})
    )
    assert act["person_id"] == DEMO_PERSON and str(act["hours"]) == "1.5"
    text_of(browser, "act-result", "积分")

    browser.find_element(By.XPATH, "//div[@id='sessionbar']//button[text()='退出']").click()
    text_of(browser, "gate", "工作人员登录")
    assert browser.get_cookies() == []
    assert databases["gateway"].staff_sessions.count_documents({"username": username}) == 0


def test_a_new_member_must_choose_a_password_and_an_ended_session_asks_to_sign_in_again(
    stack, databases, browser
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from gateway.staff import staff_accounts

    username = staff_accounts().create(new_id("portal").lower(), "王网格员", PASSWORD)  # an administrator's
    open_signed_out(browser, f"{stack.base_url}/portal/#/people")
    sign_in_with(browser, username, PASSWORD)
    text_of(browser, "sessionbar", username)

    new_password = "新口令-2027-clean-up-day"
    text_of(browser, "gate", "请先修改密码")  # before anything else, and it cannot be put off
    assert not browser.find_elements(By.XPATH, "//div[@id='gate']//button[text()='取消']")
    for field, value in (
        ("pw-current", PASSWORD),
        ("pw-new", new_password),
        ("pw-again", new_password + "x"),
    ):
        browser.find_element(By.ID, field).send_keys(value)
    browser.find_element(By.CSS_SELECTOR, "#gate button[type=submit]").click()
    text_of(browser, "err-pw-again", "不一致")  # checked here; nothing was sent
    browser.find_element(By.ID, "pw-again").send_keys(Keys.BACKSPACE)
    browser.find_element(By.CSS_SELECTOR, "#gate button[type=submit]").click()
    text_of(browser, "banners", "密码已修改")
    assert not browser.find_element(By.ID, "gate").is_displayed()
    text_of(browser, "view-people", "王建国")  # the views load now
    hashes = staff_accounts().accounts.find_one({"_id": username})["password_hash"]
    assert PasswordHasher().verify(hashes, new_password)

    # The session ends elsewhere (an administrator disables and enables the account): the next
    # call the page makes (the 双报到 page loads its community's list) brings back the sign-in form.
    staff_accounts().set_disabled(username, True)
    staff_accounts().set_disabled(username, False)
    browser.find_element(By.CSS_SELECTOR, "a.tab[data-view='dual']").click()
    text_of(browser, "gate", "登录已失效")
    sign_in_with(browser, username, new_password)
    text_of(browser, "sessionbar", username)


def test_over_plain_http_the_portal_says_why_the_sign_in_did_not_hold(stack, browser):
    from gateway.staff import staff_accounts

    username = staff_accounts().create(new_id("portal").lower(), "赵物业", PASSWORD)
    open_signed_out(browser, f"http://{PLAIN_HTTP_HOST}:{stack.gateway_port}/portal/")
    sign_in_with(browser, username, PASSWORD)
    assert "请通过 HTTPS 访问本门户" in text_of(browser, "gate", "HTTPS")
    assert browser.get_cookies() == []


def test_an_account_administrator_creates_and_disables_an_account_in_the_portal(stack, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from gateway.staff import staff_accounts

    accounts = staff_accounts()
    admin = signed_in(browser, f"{stack.base_url}/portal/#/people", ["account_admin", "inspector"], COMMUNITY)
    browser.find_element(By.CSS_SELECTOR, "a.tab[data-view='accounts']").click()  # shown to administrators
    text_of(browser, "accounts-list", admin)  # itself, within its scope

    member = new_id("m").lower()
    browser.find_element(By.ID, "account-username").send_keys(member)
    browser.find_element(By.ID, "account-name").send_keys("新网格员")
    browser.find_element(By.ID, "account-password").send_keys("临时口令-2026-first")
    offered = [
        box.get_attribute("value") for box in browser.find_elements(By.CSS_SELECTOR, "#account-roles input")
    ]
    assert offered == ["account_admin", "inspector"]  # only roles it holds
    browser.find_element(By.CSS_SELECTOR, "#account-roles input[value='inspector']").click()
    Select(browser.find_element(By.ID, "account-scope")).select_by_value(COMMUNITY)
    browser.find_element(By.ID, "account-submit").click()
    text_of(browser, "account-result", "已建立")
    created = accounts.account(member)
    assert (
        created["roles"] == ["inspector"]
        and created["scope"] == COMMUNITY
        and created["must_change_password"]
    )

    row = text_of(browser, "accounts-list", member)
    assert "待本人改密" in row
    browser.find_element(By.XPATH, f"//tr[td/span[text()='{member}']]//button[text()='停用']").click()
    text_of(browser, "account-result", "已停用")
    assert accounts.account(member)["disabled"] is True


def test_each_view_shows_the_records_it_reads(stack, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    signed_in(browser, f"{stack.base_url}/portal/#/org/{COMMUNITY}-XQ01")
    # An organisation's details, statistics and post holders (names looked up one by one).
    detail = text_of(browser, "org-detail", "张伟")
    assert "五鼎小区党支部" in detail and "书记" in detail

    browser.get(f"{stack.base_url}/portal/#/people/{DEMO_PERSON}")
    detail = text_of(browser, "person-detail", "干部考察档案")  # a cadre: account and dossier
    assert "王建国" in detail and "积分银行" in detail
    communities = [o.text for o in Select(browser.find_element(By.ID, "f-community")).options]
    assert communities[0] == "全部社区" and "中观社区大党委" in communities

    browser.get(f"{stack.base_url}/portal/#/cross/420391-001")
    table = text_of(browser, "cross-table", "张伟")
    assert "一肩挑" in table and "业主委员会" in table

    browser.get(f"{stack.base_url}/portal/#/points/rules")
    assert "zg-parking-2026" in text_of(browser, "rules-list", "zg-parking-2026")
    assert Select(browser.find_element(By.ID, "points-community")).first_selected_option.text.endswith(
        "中观社区大党委（社区大党委）"
    )


def test_a_registrar_records_a_dual_report_from_the_list(stack, browser, databases, cadre):
    from selenium.webdriver.common.by import By

    signed_in(browser, f"{stack.base_url}/portal/#/dual/{COMMUNITY}", ["registrar"])
    row = f"//div[@id='dual-status']//tr[td/span[@class='sub-id' and text()='{cadre}']]"
    assert "未报到" in text_of(browser, "dual-status", cadre) and browser.find_element(By.XPATH, row)
    browser.find_element(By.XPATH, f"{row}//button[text()='登记报到']").click()
    assert browser.find_element(By.ID, "dual-reporter").get_attribute("value") == cadre
    browser.find_element(By.ID, "dual-commitment").send_keys("每月参加一次楼栋环境整治")
    browser.find_element(By.ID, "dual-submit").click()
    text_of(browser, "dual-result", "报到已登记")
    report = databases["registry"].dual_reports.find_one({"person_id": cadre})
    assert report["community_id"] == COMMUNITY and report["commitment"] == "每月参加一次楼栋环境整治"
    eventually(lambda: "已报到" in text_at(browser, row))  # the lists reloaded
    assert browser.find_element(By.ID, "dual-submit").is_enabled()


def test_an_approver_approves_a_waiting_act_and_reads_the_statement(stack, browser, api, resident):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    # Over 6 hours of parking duty waits for an approver (the demo rule), then earns 15 points.
    act = {
        "person_id": resident,
        "act_type": "parking_order",
        "hours": "8",
        "occurred_on": local_today().isoformat(),
        "community_id": COMMUNITY,
    }
    act_id = api.record_act(act).json()["act_id"]
    eventually(
        lambda: any(
            p["act_id"] == act_id
            for p in api.get("/api/v1/points/approvals", params={"community_id": COMMUNITY}).json()["items"]
        )
    )
    signed_in(browser, f"{stack.base_url}/portal/#/points/approvals", ["approver"])
    text_of(browser, "approvals-list", act_id)
    browser.find_element(By.XPATH, f"//tr[td/span[text()='{act_id}']]//button[text()='通过']").click()
    browser.switch_to.alert.accept()  # 通过 asks for a confirmation first
    text_of(browser, "points-notice", "已通过")
    assert api.get(f"/api/v1/points/accounts/{resident}").json()["balance"] == 15
    eventually(lambda: act_id not in browser.find_element(By.ID, "approvals-list").text)

    browser.find_element(By.XPATH, "//nav[@id='points-nav']//*[text()='账户与明细']").click()
    Select(browser.find_element(By.ID, "stmt-person")).select_by_value(resident)
    browser.find_element(By.ID, "stmt-this-month").click()  # the act is today's
    statement = text_of(browser, "stmt-result", "期末余额")
    assert "测试居民 · 积分明细" in statement and "+15" in statement

    browser.find_element(By.XPATH, "//nav[@id='points-nav']//*[text()='排行榜与公示']").click()
    text_of(browser, "board-list", "名次")  # this month's leaderboard, and the community's public list
    assert "中观社区大党委" in text_of(browser, "disclosure-list", "志愿服务情况公示")


def test_a_cadres_revoked_act_is_marked_in_the_dossier_and_left_out_of_its_totals(stack, browser, api, cadre):
    act = {"act_type": "patrol_duty", "occurred_on": "2026-11-20", "community_id": COMMUNITY}
    api.record_act({**act, "person_id": cadre, "hours": "2"})
    wrong = api.record_act({**act, "person_id": cadre, "hours": "3"}).json()["act_id"]
    dossier = f"/api/v1/cadres/{cadre}/dossier"
    eventually(lambda: api.get(dossier).json()["acts_total"] == 2)
    api.post(f"/api/v1/volunteer-acts/{wrong}:revoke", json={"reason": "重复登记"})
    eventually(lambda: api.get(dossier).json()["acts_total"] == 1)

    signed_in(browser, f"{stack.base_url}/portal/#/people/{cadre}")
    detail = text_of(browser, "person-detail", "已撤销")
    assert detail.count("已撤销") == 1
    assert "志愿服务次数\n1" in detail and "累计服务时长\n2" in detail


def accessibility_problems(browser) -> list[str]:
    """What axe-core finds wrong in the page as it stands, once nothing in it is still loading:
    each rule broken, with the elements that break it."""
    # Asked of the page in one go: the views re-render as answers arrive, which would leave an
    # element found from here stale before it is looked at.
    still_loading = (
        "return [...document.querySelectorAll('.state-loading')].some((e) => e.offsetParent !== null)"
    )
    eventually(lambda: not browser.execute_script(still_loading))
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: `make test` installs axe-core from npm")
    browser.execute_script(AXE.read_text())
    return browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document).then((found) => done(found.violations.map((rule) =>"
        " `${rule.id} (${rule.impact}): ${rule.nodes.map((node) => node.target.join(' ')).join(', ')}`)));"
    )


def test_every_view_passes_the_accessibility_checks(stack, browser):
    from selenium.webdriver.common.by import By

    from gateway.keys import ROLES

    open_signed_out(browser, f"{stack.base_url}/portal/")
    text_of(browser, "gate", "工作人员登录")
    problems = {"sign-in": accessibility_problems(browser)}
    username = signed_in(browser, f"{stack.base_url}/portal/", list(ROLES))

    # Each view at an item of the demo data, and what shows once it has loaded.
    for route, element_id, loaded in (
        (f"org/{COMMUNITY}-XQ01", "org-detail", "张伟"),
        (f"people/{DEMO_PERSON}", "person-detail", "干部考察档案"),
        ("register", "act-person", "王建国"),
        (f"dual/{COMMUNITY}", "dual-status", "王建国"),
        ("cross/420391-001", "cross-table", "张伟"),
        ("ledgers", "export-list", "组织台账"),
        ("points/account", "stmt-result", "选择人员"),
        ("points/rules", "rules-list", "zg-parking-2026"),
        ("points/approvals", "approvals-count", "条待审核"),
        ("points/awards", "award-person", "王建国"),
        ("points/redeem", "catalogue-list", "大米5斤"),
        ("points/publish", "disclosure-list", "志愿服务情况公示"),
        ("accounts", "accounts-list", username),
    ):
        browser.get(f"{stack.base_url}/portal/#/{route}")
        text_of(browser, element_id, loaded)
        problems[route] = accessibility_problems(browser)

    # A form showing what is wrong with it, and the password form.
    browser.get(f"{stack.base_url}/portal/#/register")
    browser.find_element(By.ID, "act-submit").click()
    text_of(browser, "act-form", "请")
    problems["register, refused"] = accessibility_problems(browser)
    browser.find_element(By.XPATH, "//div[@id='sessionbar']//button[text()='修改密码']").click()
    text_of(browser, "gate", "确认修改")
    problems["password"] = accessibility_problems(browser)

    assert {page: found for page, found in problems.items() if found} == {}
