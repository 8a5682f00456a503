"""The products' links in the page chrome: navigation entries and dashboard cards, from the product
registry (``core.products``), filtered by the member's role. Core's own links stay in the templates."""

from dataclasses import dataclass

from django.urls import reverse

from core.products import products
from core.tenancy.roles import role_can


@dataclass(frozen=True)
class Link:
    label: str
    url: str
    description: str = ""


def _allowed(role: str | None, permission: str | None) -> bool:
    return permission is None or role_can(role, permission)


def product_nav(role: str | None) -> list[Link]:
    return [
        Link(entry.label, reverse(entry.url_name))
        for p in products()
        for entry in p.nav
        if _allowed(role, entry.permission)
    ]


def product_cards(role: str | None) -> list[Link]:
    return [
        Link(card.title, reverse(card.url_name), card.description)
        for p in products()
        for card in p.cards
        if _allowed(role, card.permission)
    ]
