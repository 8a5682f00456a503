import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

DATA = Path(__file__).resolve().parents[2] / "data" / "banking77"


@pytest.mark.django_db
def test_train_then_predict_from_the_command_line(make_org, tmp_path, monkeypatch):
    org, _ = make_org()
    source = (DATA / "train_slice.csv").read_text().replace("text,category", "text,label", 1)
    path = tmp_path / "intents.csv"
    path.write_text(source)
    out = StringIO()
    call_command(
        "train", org=org.slug, task="intent", file=path, method="head", stdout=out, stderr=StringIO()
    )
    result = json.loads(out.getvalue())
    assert result["status"] == "succeeded" and result["promoted"] and result["version"] == 1
    monkeypatch.setattr("sys.stdin", StringIO("I still have not received my card\n\nwhere is my new card?\n"))
    out = StringIO()
    call_command("predict", org=org.slug, task="intent", stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2 and all(line["version"] == 1 for line in lines)
    assert lines[0]["label"] == "card_arrival" and abs(sum(lines[0]["probabilities"].values()) - 1) < 1e-4


@pytest.mark.django_db
def test_commands_refuse_bad_input(make_org, tmp_path):
    org, _ = make_org()
    with pytest.raises(CommandError, match="No organisation"):
        call_command("predict", org="nope")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(CommandError, match="empty"):
        call_command("train", org=org.slug, task="intent", file=empty, method="head", stderr=StringIO())
    texts = tmp_path / "texts.txt"
    texts.write_text("hello\n")
    with pytest.raises(CommandError, match="No active model"):
        call_command("predict", org=org.slug, task="intent", file=texts)
