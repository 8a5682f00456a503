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


@dataclass(frozen=True)
class NextStep:
    product: str
    url: str  # the product's page, where its checklist is
    title: str
    done: int
    total: int


def product_next_steps(organisation, role: str | None) -> list[NextStep]:
    """Per product with a checklist (``Product.onboarding``) whose page the member may open, its first step
    not done yet; a product whose checklist is complete is left out."""
    steps: list[NextStep] = []
    for p in products():
        if p.onboarding is None or not p.cards or not _allowed(role, p.cards[0].permission):
            continue
        checklist = list(p.onboarding(organisation=organisation))
        pending = next((step for step in checklist if not step.done), None)
        if pending is not None:
            done = sum(step.done for step in checklist)
            steps.append(
                NextStep(p.display_name, reverse(p.cards[0].url_name), pending.title, done, len(checklist))
            )
    return steps
