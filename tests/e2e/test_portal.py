"""The staff portal in a real browser (Debian's headless Chromium): a member signs in, the browser
keeps the session cookie as the gateway set it, a volunteer act is recorded through the form
(a write, so it carries the CSRF token), and signing out ends the session."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher

from tests.conftest import COMMUNITY, new_id
from tests.support import eventually

pytestmark = pytest.mark.e2e

PASSWORD = "楼栋长-2026-micro-wish"
DEMO_PERSON = "p-zg-001"  # a cadre of 中观社区 in the demo data
# The gateway under a name that is not localhost: plain HTTP there is not a secure context.
PLAIN_HTTP_HOST = "portal.gridlink.test"


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
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_window_size(1280, 900)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def text_of(browser, element_id: str, containing: str, timeout: float = 15) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, timeout).until(
        shown.text_to_be_present_in_element((By.ID, element_id), containing)
    )
    return browser.find_element(By.ID, element_id).text


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
    admin = accounts.create(
        new_id("admin").lower(),
        "社区管理员",
        PASSWORD,
        ["account_admin", "inspector"],
        COMMUNITY,
        must_change_password=False,
    )
    open_signed_out(browser, f"{stack.base_url}/portal/#/people")
    sign_in_with(browser, admin, PASSWORD)
    text_of(browser, "sessionbar", admin)
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
