"""The packaged generator (SmolLM2-135M GGUF through transformers): one real short generation each, the
model loaded once per process (about 25 s on an idle core; shared with tests/customer_service)."""

from pathlib import Path

import pytest

from core.ml.errors import MLError
from core.ml.generator import load_generator, packaged_gguf
from core.ml.runtime import Runtime

HOURS = "Our stores are open Monday to Saturday from 9am to 7pm and on Sunday from 11am to 5pm."
GIFT = (
    "Gift cards are sold in every store and online, from 10 to 500. They are valid for two years and can be "
    "used for several purchases until the balance is spent."
)
WARRANTY = (
    "Every product has a two-year warranty. If an item breaks, bring it to any store or start a repair."
)


@pytest.fixture(scope="module")
def generator():
    return load_generator(runtime=Runtime(threads=1, device="cpu"))


def test_the_model_ships_in_a_wheel():
    assert packaged_gguf().name == "SmolLM2-135M-Instruct.Q4_1.gguf" and packaged_gguf().stat().st_size > 1e7


def test_it_answers_from_the_passage_and_cites_it(generator):
    generation, check = generator.answer(
        "How long is a gift card valid?", [GIFT, WARRANTY], max_new_tokens=24
    )
    assert generation.tokens <= 24 and 0 < generation.first_token_s <= generation.total_s
    assert not check.declined, (generation.text, check)
    assert "two years" in check.answer and check.cited == (1,)
    assert load_generator(runtime=Runtime(threads=1, device="cpu")) is generator  # loaded once


def test_it_declines_when_the_passages_do_not_answer(generator):
    generation, check = generator.answer("Do you sell bicycles?", [HOURS, GIFT, WARRANTY], max_new_tokens=24)
    assert check.declined, (generation.text, check)


def test_bad_inputs_are_refused(generator, tmp_path: Path):
    with pytest.raises(MLError, match="max_new_tokens"):
        generator.generate([{"role": "user", "content": "hi"}], max_new_tokens=0)
    with pytest.raises(MLError, match="at least one passage"):
        generator.answer("Anything?", [])
    with pytest.raises(MLError, match="No generator model"):
        load_generator(runtime=Runtime(threads=1), path=tmp_path / "missing.gguf")
