"""Hostile text in an email (issue 17 item 5): a follow-up's message names the viewer and a product,
which are anyone's text.  The HTML part escapes every character of it (no element, handler or link
made from it; the text reads as given); the plain part and the subject carry it as plain text."""

from __future__ import annotations

from email.message import EmailMessage
from html.parser import HTMLParser

import pytest

from fanops.channels import compose
from fanops.templates import suggest
from tests import hostile as H

LINKS = ["mailto:shop@example.com?subject=unsubscribe", "https://shop.example/unsub?t=abc"]
PRODUCTS = (H.IMG, H.MD_LINK, H.LONG, H.FORMULA)


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parts(m: EmailMessage) -> tuple[str, str]:
    plain = m.get_body(("plain",))
    html = m.get_body(("html",))
    assert plain is not None and html is not None
    return plain.get_content(), html.get_content()


@pytest.mark.parametrize("name", [*H.NAMES, f"{H.MARK}\n\n<b>two</b>\nlines"], ids=H.short_id)
def test_the_html_part_shows_any_text_as_text_and_makes_nothing_of_it(name: str) -> None:
    message = f"Hi {name}!\n\n{H.SCRIPT} {H.HTML_LINK}\n{H.MD_IMAGE}"
    m = compose.email_message(message, "Shop <hi@shop.example>", "fan@example.com", LINKS)
    plain, html = _parts(m)
    p = _Html()
    p.feed(html)
    assert {t for t, _ in p.tags} <= {"html", "body", "p", "br", "a"}, p.tags
    links = [a for t, a in p.tags if t == "a"]
    assert links == [[("href", LINKS[1])]]  # the one link is the unsubscribe page
    assert not [k for _, a in p.tags for k, _ in a if k.startswith("on")]
    # every character, read as text (a lone CR travels as a line end, as the MIME policy writes it)
    assert "".join(p.text).rstrip("\n") == message.replace("\n", "").replace("\r", "\n") + "Unsubscribe"
    assert message.replace("\r", "\n") in plain
    assert "\n" not in m["Subject"] and "\r" not in m["Subject"] and len(m["Subject"]) <= compose.SUBJECT_CHARS


@pytest.mark.parametrize("product", PRODUCTS, ids=H.short_id)
def test_a_suggested_message_with_hostile_name_and_product_is_escaped_in_html(product: str) -> None:
    for name in H.NAMES:
        message = suggest(None, "active", "en", name, product)
        html = compose.html_body(message, LINKS)
        p = _Html()
        p.feed(html)
        assert {t for t, _ in p.tags} <= {"html", "body", "p", "br", "a"}, (name, p.tags)
        assert "".join(p.text) == message.replace("\n", "") + "Unsubscribe", name  # as given, then the link
