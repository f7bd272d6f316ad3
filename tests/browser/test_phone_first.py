"""Issue 9, phone first: every public page and every staff page, for each staff role, at
375 x 812 CSS px: nothing scrolls sideways, every target a thumb must hit is at least 24 x 24
(WCAG 2.5.8; links inside a sentence are exempt, as the criterion says), and the keyboard's
focus is visible. Each page is also checked with axe-core by ``arrive``.

The clinic is the hostile one of tests/test_attack_xss.py: it has a record of every kind, so
every page has something to show, and its long names (markup in them, shown as text) test that
text wraps instead of pushing the page wider.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from scheduler.staff.models import Role, User
from tests.browser.conftest import PHONE, arrive
from tests.browser.test_staff_journeys import give_password
from tests.conftest import PASSWORD
from tests.test_attack_xss import ADMIN_EMAIL, PUBLIC_PAGES, STAFF_PAGES, World, build_world

if TYPE_CHECKING:
    from playwright.sync_api import Page

# Mail previews are mail, framed on staff pages (their own test reads them).
EXTRA_PUBLIC = ("/staff/login", "/no/such/page", "/b/BADTOKEN")
TABS = 6
ANY_URL = re.compile(".*")

# What a page is found lacking: wider than the screen, targets too small to hit.
MEASURE = """() => {
  const root = document.documentElement;
  const wide = root.scrollWidth > root.clientWidth
    ? [`the page is ${root.scrollWidth} px wide on a ${root.clientWidth} px screen`] : [];
  const widest = [...document.body.querySelectorAll('*')]
    .filter((el) => el.getBoundingClientRect().right > root.clientWidth + 0.5
      && getComputedStyle(el).position !== 'fixed'
      && !el.parentElement.closest('.table-scroll, .grid, pre'))
    .slice(0, 5)
    .map((el) => `${el.outerHTML.slice(0, 80)}: right edge at `
      + `${Math.round(el.getBoundingClientRect().right)} px`);
  const blockOf = (el) => {
    let at = el.parentElement;
    while (at && getComputedStyle(at).display.startsWith('inline')) at = at.parentElement;
    return at;
  };
  // WCAG 2.5.8's inline exception: a link inside a sentence of text.
  const inSentence = (el) => {
    if (el.tagName !== 'A' || getComputedStyle(el).display !== 'inline') return false;
    const block = blockOf(el);
    const rest = block ? block.textContent.replace(el.textContent, '') : '';
    return /\\p{L}{2,}/u.test(rest);
  };
  const selector = 'main a[href], header a[href], button, input:not([type=hidden]), select,'
    + ' textarea, summary';
  const small = [...document.querySelectorAll(selector)].filter((el) => {
    const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (style.visibility === 'hidden' || box.width === 0 || box.height === 0) return false;
    if (el.closest('.visually-hidden, [hidden], iframe')) return false;
    return (box.width < 24 || box.height < 24) && !inSentence(el);
  }).slice(0, 8).map((el) => {
    const box = el.getBoundingClientRect();
    const name = (el.textContent || el.getAttribute('name') || el.type || '').trim().slice(0, 40);
    return `${el.tagName.toLowerCase()} "${name}" is ${box.width.toFixed(1)} x `
      + `${box.height.toFixed(1)} px`;
  });
  return [...wide, ...(wide.length ? widest : []), ...small];
}"""

# Whether the focused element shows it: an outline or a ring of box-shadow.
FOCUS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  // The site's own ring, 2 px or more: the browser's thin default ('auto') is not enough.
  const outlined = !['none', 'auto'].includes(style.outlineStyle)
    && parseFloat(style.outlineWidth) >= 2;
  const ringed = style.boxShadow && style.boxShadow !== 'none';
  return outlined || ringed ? '' : `${el.tagName.toLowerCase()} "${
    (el.textContent || el.name || '').trim().slice(0, 40)}" shows no focus`;
}"""


def check(page: Page, path: str) -> list[str]:
    """Visit ``path`` on a phone and say what is wrong with it: too wide, targets too small,
    or one of the first places the Tab key reaches that does not show it has the focus."""
    page.goto(path)
    arrive(page, ANY_URL)
    found = [f"{path}: {problem}" for problem in page.evaluate(MEASURE)]
    reached = 0
    for _ in range(TABS):
        page.keyboard.press("Tab")
        problem = page.evaluate(FOCUS)
        if problem is None:
            break
        reached += 1
        if problem:
            found.append(f"{path}: {problem}")
    if not reached:
        found.append(f"{path}: the Tab key reaches nothing")
    return found


def log_in(page: Page, email: str) -> None:
    page.goto("/staff/login")
    arrive(page, "**/staff/login")
    give_password(page, email)
    arrive(page, "**/staff/")


@pytest.fixture
def world(app: Flask, session: Session) -> World:
    """The hostile clinic, with a receptionist and a practitioner beside its admin."""
    built = build_world(app, session)
    for role, email in (
        (Role.RECEPTION, "desk@clinic.test"),
        (Role.PRACTITIONER, "p1@clinic.test"),
    ):
        user = User(
            email=email, role=role, practitioner_id=built.p1 if role is Role.PRACTITIONER else None
        )
        user.set_password(PASSWORD)
        session.add(user)
    session.commit()
    return built


def is_mail(path: str) -> bool:
    return path.split("?")[0].endswith("/html") or "/mail/" in path


def test_every_public_page_fits_a_phone(page: Page, world: World) -> None:
    page.set_viewport_size(PHONE)
    found: list[str] = []
    for template in (*PUBLIC_PAGES, *EXTRA_PUBLIC):
        found += check(page, template.format(w=world))
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    "email",
    [ADMIN_EMAIL, "desk@clinic.test", "p1@clinic.test"],
    ids=["admin", "reception", "practitioner"],
)
def test_every_staff_page_fits_a_phone(page: Page, world: World, email: str) -> None:
    page.set_viewport_size(PHONE)
    log_in(page, email)
    found: list[str] = []
    for group in STAFF_PAGES.values():
        for template in group:
            if not is_mail(template):
                found += check(page, template.format(w=world))
    assert found == [], "\n".join(found)
