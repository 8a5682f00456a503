"""The tenant's out-of-scope check: with it on, the bot's threshold compares the top probability capped by the
model's ``in_scope`` (``core.ml.ood``), so a question unlike every training example is not answered from a
template; off (the default), the top probability alone. The set-up page's operating points follow the rule."""

import re

import pytest

from core.ml.ood import OutOfScope
from core.registry import services as registry
from core.registry.models import ModelVersion
from customer_service import selectors, services
from customer_service.models import AnswerSource
from customer_service.services.answering import decide
from tests.customer_service.conftest import banking_rows, login

STRANGERS = [
    "What is the boiling point of mercury on Venus?",
    "Recommend a good pizza topping for a rainy evening",
    "How tall is the Eiffel tower in winter",
    "Sing me a song about whales and lighthouses",
    "Which football team won the league in 1987?",
    "my cat keeps sneezing at the curtains",
]


@pytest.mark.django_db
def test_a_question_unlike_the_training_rows_is_answered_only_without_the_check(bot_org, monkeypatch):
    organisation, _owner, version_id = bot_org
    predictor = registry.predictor_for(version=ModelVersion.objects.for_org(organisation).get(pk=version_id))
    predictions = predictor.predict(STRANGERS)
    assert all(p.in_scope is not None for p in predictions)  # the version has an out-of-scope model
    # the stranger whose top probability the in-scope score caps the most
    gap, text, guess = max(
        ((p.probabilities[p.label] - p.in_scope, t, p) for t, p in zip(STRANGERS, predictions, strict=True)),
        key=lambda found: found[0],
    )
    assert gap > 0.05, [(p.label, p.probabilities[p.label], p.in_scope) for p in predictions]
    top = guess.probabilities[guess.label]
    threshold = round((top + guess.in_scope) / 2, 4)  # between the two: only the rule decides
    services.template_save(organisation=organisation, intent=guess.label, body="Here is how it works.")
    bot = services.bot_settings_update(organisation=organisation, intent_threshold=threshold)
    assert bot.out_of_scope_check is False  # off unless the tenant turns it on

    scored = []  # the texts the out-of-scope model scored: only where the rule reads the score
    real_in_scope = OutOfScope.in_scope

    def counted(self, embeddings, top_probability):
        scored.append(len(embeddings))
        return real_in_scope(self, embeddings, top_probability)

    monkeypatch.setattr(OutOfScope, "in_scope", counted)
    answered = decide(organisation=organisation, bot=bot, text=text)
    assert answered.source == AnswerSource.TEMPLATE and answered.confidence == pytest.approx(top)
    assert scored == []  # the check is off: the question is not compared with every training row

    bot = services.bot_settings_update(
        organisation=organisation, out_of_scope_check=True, uncertain_mode="handoff"
    )
    refused = decide(organisation=organisation, bot=bot, text=text)
    assert scored == [1]
    assert refused.source == AnswerSource.HANDOFF
    assert refused.confidence == pytest.approx(guess.in_scope)
    assert refused.reason.startswith("Unlike the questions the model was trained on: in scope"), (
        refused.reason
    )

    # a question like the training rows is still answered with the check on
    own = [t for t, label in banking_rows("train_slice.csv") if label == guess.label][:20]
    clears = [
        t
        for t, p in zip(own, predictor.predict(own), strict=True)
        if p.label == guess.label and p.confidence >= threshold
    ]
    assert clears, "no training row of the intent clears the threshold under the capped rule"
    assert decide(organisation=organisation, bot=bot, text=clears[0]).source == AnswerSource.TEMPLATE


@pytest.mark.django_db
def test_the_setting_through_the_api_and_the_set_up_page(bot_org, user_client):
    organisation, owner, version_id = bot_org
    client = user_client(owner)
    base = "/api/customer-service/settings/"
    assert client.get(base).json()["out_of_scope_check"] is False
    bad = client.patch(base, {"out_of_scope_check": "perhaps"}, format="json")
    assert bad.status_code == 400 and "out_of_scope_check" in str(bad.json()["error"])
    assert (
        client.patch(base, {"out_of_scope_check": True}, format="json").json()["out_of_scope_check"] is True
    )

    metrics = ModelVersion.objects.for_org(organisation).get(pk=version_id).metrics
    plain = selectors.operating_points(organisation=organisation, out_of_scope=False)
    capped = selectors.operating_points(organisation=organisation, out_of_scope=True)
    assert metrics["in_scope_coverage"] != metrics["coverage"]
    assert [p["answered"] / 100 for p in capped] == pytest.approx(
        [p["answered"] for p in metrics["in_scope_coverage"]]
    )
    assert [p["answered"] / 100 for p in plain] == pytest.approx([p["answered"] for p in metrics["coverage"]])

    browser = login(owner)
    page = browser.get("/customer-service/")
    differ = [
        (c, q) for c, q in zip(capped, plain, strict=True) if f"{c['answered']:.1f}" != f"{q['answered']:.1f}"
    ]
    assert differ  # the capped rule answers fewer at some threshold
    point, other = differ[0]
    row = "<td>{:.2f}</td><td>{:.1f}%</td>"
    assert row.format(point["threshold"], point["answered"]) in page.text  # the capped rule's figures
    assert row.format(other["threshold"], other["answered"]) not in page.text
    assert re.search(r'<input type="checkbox" name="out_of_scope_check"[^>]*checked', page.text)
    off = browser.post(
        "/customer-service/settings/uncertain/",
        {"uncertain_mode": "handoff", "suggestion_floor": "0.15", "rephrase_message": "Say it again?"},
    )
    assert off.status_code == 302  # an unticked box turns it off
    assert services.bot_settings_for(organisation=organisation).out_of_scope_check is False
