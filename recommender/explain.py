"""Why a served item is there, in plain Python (numpy, no Django): besides ``why`` (the history items that
drove it, which global components cannot name), every served item gets one ``reason``, the component of its
score that contributed most, as ``{"kind", "detail", "items"}``; never empty, whatever the model.

Kinds (``items``: the history items the reason names, the same as ``why`` or empty):

- ``items``: it goes with the user's items (EASE, item-kNN, the hybrid's collaborative part);
- ``next``: customers went on to it after the user's recent items (the hybrid's sequence part);
- ``text``: its text is close to the user's items' text (the hybrid's text part, or a ranking by text alone
  when the model knows none of the history's items);
- ``new``: nobody had bought it in the events the hybrid was fitted on (a cold slot, or an item added since),
  and it is reached through its text;
- ``tower``: the two-tower model matches it to the user's recent items;
- ``rising``: its sales in the last ``rising_days`` days beat its longer-run rate;
- ``trend``: it sold well in the last few days (events decayed with a ``trend_days`` half-life);
- ``popular``: many customers bought it (the popularity models, and the collaborative ones for an item the
  history does not reach: a user they know nothing of);
- ``boost``: the shop promotes it (the catalogue's ``boost`` attribute);
- ``catalogue``: no component scored it above 0 and nothing better was left (a small catalogue's filler).

The hybrid's parts (``HybridModel.parts``) are compared as the blend weighs them; a part that comes from the
history (collab, sequence, text) is named only when some history item has a positive share of it (``why``),
otherwise the next largest is.
"""

from collections.abc import Callable
from dataclasses import dataclass

from recommender import hybrid, ranking

LIVE_POPULARITY_DAYS = 30  # ``selectors.popular_items``' window: what serves before the first model
FROM_HISTORY = {"collab": "items", "sequence": "next", "text": "text"}
GLOBAL = {"popularity": "popular", "trend": "trend", "rising": "rising", "boost": "boost"}


@dataclass(frozen=True)
class Reason:
    kind: str
    items: tuple[str, ...] = ()


def reason_of(*, model, history: dict[str, float], item: str, why: list[str], by_text: bool) -> Reason:
    """The reason ``model`` served ``item`` for ``history`` (``why``: its history items; ``by_text``: it came
    from the catalogue's text neighbours, not from the model's own scores)."""
    if isinstance(model, hybrid.HybridModel):
        if model.cold(item) and (why or by_text):
            return Reason("new", tuple(why))
        if by_text:
            return Reason("text", tuple(why))
        return _largest(model.parts(history, item), why)
    if by_text:
        return Reason("text", tuple(why))
    if why:
        return Reason("items", tuple(why))
    return Reason("popular")


def _largest(parts: dict[str, float], why: list[str]) -> Reason:
    for _value, name in sorted(((v, n) for n, v in parts.items() if v > 0), reverse=True):
        if name in FROM_HISTORY:
            if why:
                return Reason(FROM_HISTORY[name], tuple(why))
            continue  # no history item has a positive share of it: not a reason to give
        if name == "tower":
            return Reason("tower", tuple(why))
        return Reason(GLOBAL[name])
    return Reason("catalogue")


def detail(reason: Reason, *, model, names: Callable[[tuple[str, ...]], str], live: bool = False) -> str:
    """The reason in words; ``names`` turns item ids into their titles; ``live``: the model is the live
    popularity that serves before the first model is trained."""
    named = names(reason.items) if reason.items else ""
    config = getattr(model, "config", None)
    if reason.kind == "items":
        return f"often taken with {named}"
    if reason.kind == "next":
        return f"what customers took next after {named}"
    if reason.kind == "text":
        return f"similar to the text of {named}" if named else "close to the text of the items you looked at"
    if reason.kind == "new":
        return f"new item similar to {named}" if named else "new item, close to the text of your items"
    if reason.kind == "tower":
        return "suits your recent items (the two-tower model)"
    if reason.kind == "rising" and isinstance(config, hybrid.HybridConfig):
        return f"sales up in the last {config.rising_days:g} days"
    if reason.kind == "trend" and isinstance(config, hybrid.HybridConfig):
        return f"selling well lately (ranked by events, the last {config.trend_days:g} days weighing most)"
    if reason.kind == "boost":
        return "promoted by the shop"
    if reason.kind == "popular":
        if isinstance(config, ranking.RankConfig) and live:
            return f"popular in the last {LIVE_POPULARITY_DAYS} days (ranked by events)"
        if isinstance(config, ranking.RankConfig):
            return f"popular lately (ranked by events, the last {config.half_life_days:g} days weighing most)"
        return "popular (ranked by how many customers bought it)"
    return "in the catalogue: nothing left scored higher"


def as_dict(reason: Reason, *, model, names: Callable[[tuple[str, ...]], str], live: bool = False) -> dict:
    return {
        "kind": reason.kind,
        "detail": detail(reason, model=model, names=names, live=live),
        "items": list(reason.items),
    }
