"""The pure parts of grounded answers: BM25, reciprocal rank fusion, and the answer check."""

import pytest

from core.ml.grounding import BM25, answer_check, prompt_messages, rrf_fuse, terms

HOURS = "Our stores are open Monday to Saturday from 9am to 7pm and on Sunday from 11am to 5pm."
GIFT = "Gift cards are sold in every store and online, from 10 to 500. They are valid for two years."


def test_rrf_ranks_by_summed_reciprocal_ranks():
    fused = rrf_fuse([["a", "b", "c"], ["c", "a", "d"]], k=60)
    assert [key for key, _ in fused] == ["a", "c", "b", "d"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[1][1] == pytest.approx(1 / 63 + 1 / 61)
    # in one ranking only, a first place beats a second place anywhere
    assert [key for key, _ in rrf_fuse([["x"], ["y", "z"]])] == ["x", "y", "z"]
    assert rrf_fuse([[], []]) == []
    with pytest.raises(ValueError):
        rrf_fuse([["a"]], k=-1)


def test_bm25_ranks_exact_words_and_ignores_stopwords():
    index = BM25(["hours", "gift"], [HOURS, GIFT])
    assert [key for key, _ in index.top("How long are gift cards valid?", 2)] == ["gift"]
    assert [key for key, _ in index.top("open on Sunday", 2)] == ["hours"]
    assert index.top("what is the", 2) == []  # stopwords only: nothing scores
    assert "card" in terms("Cards") and "the" not in terms("the")


def test_an_answer_standing_on_its_passages_is_kept_and_cites_them():
    check = answer_check("A gift card is valid for two years [2].", [HOURS, GIFT], question="Gift card?")
    assert not check.declined and check.cited == (2,) and check.support == 1.0
    assert check.answer == "A gift card is valid for two years."
    # no citation mark: the passage sharing most words is cited
    assert answer_check("Stores open on Sunday from 11am to 5pm.", [GIFT, HOURS]).cited == (2,)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("I don't know.", "do not answer"),
        ("The passages do not mention bicycles.", "do not answer"),
        ("Can I pay with bitcoin?", "repeated the question"),
        ("Stores open on Sunday from 8am to 5pm.", "not all in the passages"),  # a number not in them
        ("Yes, we sell bicycles and scooters at a discount.", "not all in the passages"),  # words not in them
        ("Gift cards.", "adds nothing"),
    ],
)
def test_answers_not_in_the_passages_are_refused(raw, reason):
    check = answer_check(raw, [HOURS, GIFT], question="Do you have gift cards?")
    assert check.declined and reason in check.reason


def test_one_unsupported_sentence_refuses_the_whole_answer():
    check = answer_check("Gift cards are valid for two years. They also earn loyalty points.", [GIFT])
    assert check.declined and "not all in the passages" in check.reason and "loyalty" in check.unsupported
    assert not answer_check(
        "Gift cards are valid for two years. Gift cards are sold online.", [GIFT]
    ).declined
    lenient = answer_check("Gift cards are valid for two years in Leeds.", [GIFT, HOURS], floor=0.75)
    assert not lenient.declined and lenient.support < 1.0


def test_the_prompt_numbers_the_passages_and_allows_i_dont_know():
    system, _example, _answer, message = prompt_messages("  When   open? ", [HOURS, GIFT])
    assert system["role"] == "system" and "I don't know." in system["content"]
    assert message["role"] == "user"
    assert f"[1] {HOURS}\n[2] {GIFT}" in message["content"]
    assert message["content"].endswith("Question: When open?")
