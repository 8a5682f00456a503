"""Near copies: the MinHash rule on its own (no database), and through the ingest: a near copy is stored as
its original's copy like an exact copy, within the organisation and the window only, and counted once."""

import threading
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from core.celery import app as celery_app
from finance_monitor import near_duplicates as near
from finance_monitor import tasks
from finance_monitor.models import Document, DocumentBand, SourceKind, TrendBucket
from finance_monitor.services import classification, entities, near_copies
from finance_monitor.services import documents as docs
from finance_monitor.services.trends import document_classified

BASE = "/api/finance-monitor"
# 30 words, with a number, a cashtag and an @mention (anchors)
STORY = (
    "Shares of $KEY climbed 4% on Tuesday after the regional lender reported stronger quarterly earnings "
    "and raised its full year guidance citing resilient consumer demand and lower funding costs @analyst"
)
EDITED = STORY.replace("stronger", "better")  # one ordinary word edited
NEU = {"positive": 0.2, "neutral": 0.7, "negative": 0.1}


def fingerprint(text: str) -> near.Fingerprint:
    fp = near.fingerprint(near.unwrap_text(text))
    assert fp is not None
    return fp


def test_identical_texts_have_the_same_signature_and_bands():
    a, b = fingerprint(STORY), fingerprint("RT @desk: " + STORY + " https://t.co/x")
    assert len(STORY.split()) == 30
    assert a == b and len(a.bands) == near.DEFAULT.bands
    items = near.shingles(near.tokens(near.unwrap_text(STORY)), 1)
    assert (near.signature(items) == near.signature(items)).all()
    assert near.near_copy_pair(a, b)


def test_a_one_word_edit_is_found_and_unrelated_or_other_news_is_not():
    story = fingerprint(STORY)
    for copy in (EDITED, STORY.replace(" full year", " year"), STORY.replace("Tuesday", "Tuesday morning")):
        assert docs.text_hash(copy) != docs.text_hash(STORY) and near.near_copy_pair(story, fingerprint(copy))
    unrelated = "Oil prices slump as OPEC output rises and traders brace for a weaker winter demand outlook"
    assert not near.near_copy_pair(story, fingerprint(unrelated))
    for other_news in (
        STORY.replace("4%", "6%"),  # another number
        STORY.replace("$KEY", "$CFG"),  # another cashtag
        STORY.replace("@analyst", "@bloomberg"),  # another @mention
        STORY.replace("reported", "has not reported"),  # a negation
    ):
        assert not near.near_copy_pair(story, fingerprint(other_news)), other_news
    assert near.fingerprint(near.unwrap_text("Apple shares rise")) is None  # too short to judge


APPLE = "Apple shares fall 3% after earnings miss"


def test_one_company_written_for_another_is_another_document_an_edit_beside_a_name_is_not():
    apple = fingerprint(APPLE)
    microsoft = fingerprint(APPLE.replace("Apple", "Microsoft"))
    # everything else says copy: a shared band, the same anchors, Jaccard 6/8
    assert near.share_band(apple, microsoft) and apple.anchors == microsoft.anchors
    assert near.jaccard(apple.shingles, microsoft.shingles) >= near.DEFAULT.threshold
    assert near.names_swapped(apple, microsoft) and not near.near_copy_pair(apple, microsoft)
    headline = fingerprint("Apple Shares Fall 3% After Earnings Miss")  # the text's own case does not matter
    assert not near.near_copy_pair(headline, fingerprint("TESLA SHARES FALL 3% AFTER EARNINGS MISS"))
    assert {"apple", "microsoft", "tesla"} <= near.name_words() and "shares" not in near.name_words()
    for copy in (
        APPLE.replace("fall", "drop"),  # an ordinary word edited beside the name
        APPLE.replace("Apple", "Apple and Microsoft"),  # a name added, none swapped
        APPLE + " on Tuesday",  # a name added
    ):
        assert near.near_copy_pair(apple, fingerprint(copy)), copy
    # unknown to the shipped texts: not a name, unless the watch-list says so (its entries are anchors)
    zorblax, quintar = (
        "Zorblax shares fall 3% after earnings miss",
        "Quintar shares fall 3% after earnings miss",
    )
    assert near.near_copy_pair(fingerprint(zorblax), fingerprint(quintar))
    watched = [
        near.fingerprint(near.unwrap_text(t), entities=[key]) for t, key in ((zorblax, "1"), (quintar, "2"))
    ]
    assert watched[0] is not None and watched[1] is not None
    assert "entity:1" in watched[0].anchors and not near.near_copy_pair(watched[0], watched[1])


@pytest.mark.django_db
def test_texts_about_two_watched_companies_stay_two_documents(make_org):
    watching, _ = make_org()
    entities.entity_save(organisation=watching, kind="company", name="Zorblax", ticker="ZBX")
    entities.entity_save(organisation=watching, kind="company", name="Quintar Group", aliases=["Quintar"])
    not_watching, _ = make_org()
    zorblax = "Zorblax shares fall 3% after earnings miss, the chipmaker said on its call"
    texts = [zorblax, zorblax.replace("Zorblax", "Quintar"), zorblax.replace("chipmaker", "company")]
    for organisation, statuses in (
        (watching, ["created", "created", "duplicate"]),  # the edit beside a watched name is still a copy
        (not_watching, ["created", "duplicate", "duplicate"]),  # unknown names: one word edited
    ):
        items = [docs.DocumentIn(text=t) for t in texts]
        result = docs.documents_ingest(organisation=organisation, items=items)
        assert [o.status for o in result.outcomes] == statuses


def push(client, documents):
    answer = client.post(f"{BASE}/documents/batch", {"documents": documents}, format="json")
    assert answer.status_code == 200, answer.json()
    return answer.json()


@pytest.mark.django_db
def test_a_near_copy_pushed_through_the_api_is_a_copy_counted_once(make_org, make_key, key_client):
    organisation, _ = make_org()
    _, secret = make_key(organisation, scopes=("train", "read"))
    client = key_client(secret)
    first = push(client, [{"id": "s-1", "text": STORY}])["results"][0]
    assert first["status"] == "created"
    made = push(client, [{"id": "s-2", "text": EDITED}])
    copy = made["results"][0]
    assert made["counts"]["copies"] == 1 and copy["copy"] and copy["status"] == "duplicate"
    assert copy["duplicate_of"] == first["document_id"] and copy["document_id"]
    again = push(client, [{"id": "s-2", "text": EDITED}])  # idempotent by client id: the same copy
    assert again["results"][0]["status"] == "existing"
    assert again["results"][0]["document_id"] == copy["document_id"]
    stored = Document.objects.for_org(organisation)
    assert stored.get(pk=first["document_id"]).copies == 1
    assert stored.get(pk=copy["document_id"]).duplicate_of_id == first["document_id"]
    # only originals have bands; the copy waits for no classification and is never counted in the trends
    assert set(DocumentBand.objects.for_org(organisation).values_list("document_id", flat=True)) == {
        first["document_id"]
    }
    pending = list(classification.pending_documents(organisation=organisation).values_list("id", flat=True))
    assert pending == [first["document_id"]]
    for document_id in pending:
        document_classified(
            organisation=organisation, document_id=document_id, topic="earnings", probabilities=NEU
        )
    day = TrendBucket.objects.for_org(organisation).get(dimension="all", granularity="day")
    assert day.volume == 1


@pytest.mark.django_db
def test_near_copies_in_one_batch_and_their_exact_copies_follow_the_first(make_org):
    organisation, _ = make_org()
    items = [STORY, EDITED, "RT @desk: " + EDITED.upper(), STORY.replace("4%", "6%")]
    result = docs.documents_ingest(organisation=organisation, items=[docs.DocumentIn(text=t) for t in items])
    original = result.outcomes[0].document_id
    assert [(o.status, o.copy, o.duplicate_of) for o in result.outcomes] == [
        ("created", False, None),
        ("duplicate", True, original),  # near copy of the first
        ("duplicate", True, original),  # an exact copy of the near copy: the first's copy too
        ("created", False, None),  # another number: other news
    ]
    stored = Document.objects.for_org(organisation)
    assert stored.get(pk=original).copies == 2 and stored.filter(duplicate_of_id=original).count() == 2
    assert result.counts()["copies"] == 2 and len(result.created) == 2
    bands = DocumentBand.objects.for_org(organisation)
    assert set(bands.values_list("document_id", flat=True)) == set(result.created)
    # each original's bands are its fingerprint's, numbered, stored now
    first = near_copies.near_copies_fingerprint(organisation=organisation, texts=[STORY])[STORY]
    assert first is not None
    stored_bands = sorted(bands.filter(document_id=original).values_list("band", "hash"))
    assert stored_bands == list(enumerate(first.bands))
    assert all(timezone.now() - b.created_at < timedelta(minutes=1) for b in bands)


@pytest.mark.django_db
def test_another_organisations_document_is_never_the_original(make_org):
    mine, _ = make_org()
    theirs, _ = make_org()
    docs.documents_ingest(organisation=theirs, items=[docs.DocumentIn(text=STORY)])
    result = docs.documents_ingest(organisation=mine, items=[docs.DocumentIn(text=EDITED)])
    assert [o.status for o in result.outcomes] == ["created"]
    again = docs.documents_ingest(organisation=theirs, items=[docs.DocumentIn(text=EDITED)])
    assert again.outcomes[0].copy and Document.objects.for_org(mine).get().copies == 0


@pytest.mark.django_db
def test_outside_the_window_or_with_the_setting_off_a_near_copy_is_an_original(make_org, settings):
    organisation, _ = make_org()
    first = docs.documents_ingest(organisation=organisation, items=[docs.DocumentIn(text=STORY)]).created
    settings.FM_NEAR_DUPLICATE_WINDOW_DAYS = 7
    DocumentBand.objects.for_org(organisation).update(created_at=timezone.now() - timedelta(days=8))
    late = docs.documents_ingest(organisation=organisation, items=[docs.DocumentIn(text=EDITED)])
    assert late.outcomes[0].status == "created"
    settings.FM_NEAR_DUPLICATES = False  # the late one is in the window, but the rule is off
    off = docs.documents_ingest(organisation=organisation, items=[docs.DocumentIn(text=EDITED + " today")])
    assert off.outcomes[0].status == "created"
    assert not DocumentBand.objects.for_org(organisation).filter(document_id=off.created[0]).exists()
    settings.FM_NEAR_DUPLICATES = True
    on = docs.documents_ingest(organisation=organisation, items=[docs.DocumentIn(text=EDITED + " again")])
    assert on.outcomes[0].duplicate_of == late.created[0] and first[0] != late.created[0]


@pytest.mark.django_db
def test_bands_are_written_in_the_documents_transaction(make_org):
    organisation, _ = make_org()
    with pytest.raises(RuntimeError), transaction.atomic():
        docs.documents_ingest(organisation=organisation, items=[docs.DocumentIn(text=STORY)])
        assert DocumentBand.objects.for_org(organisation).count() == near.DEFAULT.bands
        raise RuntimeError("the caller's transaction fails")
    assert not DocumentBand.objects.for_org(organisation).exists()
    assert not Document.objects.for_org(organisation).exists()


@pytest.mark.django_db
def test_bands_older_than_the_window_are_pruned_and_the_rule_still_works(make_org, settings):
    settings.FM_NEAR_DUPLICATE_WINDOW_DAYS = 7
    organisation, _ = make_org()
    other, _ = make_org()
    old = docs.documents_ingest(organisation=organisation, items=[docs.DocumentIn(text=STORY)]).created[0]
    DocumentBand.objects.for_org(organisation).update(created_at=timezone.now() - timedelta(days=8))
    young = docs.documents_ingest(organisation=other, items=[docs.DocumentIn(text=STORY)]).created[0]

    assert (
        near_copies.near_copy_bands_prune(batch=5) == near.DEFAULT.bands
    )  # in batches of 5 statements' rows
    assert not DocumentBand.objects.for_org(organisation).exists()
    assert DocumentBand.objects.for_org(other).filter(document_id=young).count() == near.DEFAULT.bands
    assert Document.objects.for_org(organisation).filter(pk=old).exists()  # the document itself stays
    assert near_copies.near_copy_bands_prune() == 0
    copy = docs.documents_ingest(organisation=other, items=[docs.DocumentIn(text=EDITED)])
    assert copy.outcomes[0].duplicate_of == young  # the window's bands still find near copies


def _in_thread(target, errors: list) -> threading.Thread:
    """``target`` in a thread with its own database connection (closed at the end); what it raises lands in
    ``errors``."""

    def run() -> None:
        try:
            target()
        except Exception as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    return threading.Thread(target=run)


@pytest.mark.django_db(transaction=True)
def test_near_copies_pushed_at_the_same_instant_by_two_workers_are_an_original_and_its_copy(make_org):
    """Two workers, each with its own connection and transaction, push near copies of each other at once,
    round after round (without the band locks 11 of the 12 rounds left two originals)."""
    organisation, _ = make_org()
    rounds = 12
    stories = [STORY.replace("4%", f"{n + 10}%") for n in range(rounds)]  # another number: another story
    pairs = [(story, story.replace("stronger", "better")) for story in stories]
    docs.source_for(
        organisation=organisation, kind=SourceKind.API, name="API"
    )  # not created by the race itself
    assert all(near.near_copy_pair(fingerprint(a), fingerprint(b)) for a, b in pairs)
    barrier, errors = threading.Barrier(2), []
    outcomes: dict[int, list[docs.Outcome]] = {0: [], 1: []}

    def worker(side: int):
        def push_each_round() -> None:
            for pair in pairs:
                barrier.wait(10)
                item = docs.DocumentIn(text=pair[side])
                outcomes[side].append(
                    docs.documents_ingest(organisation=organisation, items=[item]).outcomes[0]
                )

        return push_each_round

    threads = [_in_thread(worker(0), errors), _in_thread(worker(1), errors)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(outcomes[0]) == len(outcomes[1]) == rounds
    for a, b in zip(outcomes[0], outcomes[1], strict=True):
        original, copy = (a, b) if a.status == "created" else (b, a)
        assert original.status == "created" and copy.copy and copy.duplicate_of == original.document_id
    stored = Document.objects.for_org(organisation)
    assert stored.filter(duplicate_of__isnull=True).count() == rounds
    assert stored.filter(duplicate_of__isnull=False).count() == rounds


@pytest.mark.django_db(transaction=True)
def test_a_near_copy_pushed_while_an_upload_holds_its_original_uncommitted_becomes_its_copy(make_org):
    """A caller's transaction (an upload, a feed poll) holds the organisation's lock until it commits: a
    near copy pushed meanwhile waits, then finds the original."""
    organisation, _ = make_org()
    stored, errors, outcomes = threading.Event(), [], {}
    docs.source_for(
        organisation=organisation, kind=SourceKind.API, name="API"
    )  # the push waits on nothing else

    def upload() -> None:
        with transaction.atomic():
            result = docs.documents_ingest(organisation=organisation, items=[docs.DocumentIn(text=STORY)])
            outcomes["original"] = result.outcomes[0]
            stored.set()
            time.sleep(0.5)  # the push below must wait for this commit

    def push() -> None:
        assert stored.wait(10)
        result = docs.documents_ingest(organisation=organisation, items=[docs.DocumentIn(text=EDITED)])
        outcomes["copy"] = result.outcomes[0]

    threads = [_in_thread(upload, errors), _in_thread(push, errors)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors and outcomes["original"].status == "created"
    assert outcomes["copy"].copy and outcomes["copy"].duplicate_of == outcomes["original"].document_id
    assert Document.objects.for_org(organisation).get(pk=outcomes["original"].document_id).copies == 1


@pytest.mark.django_db
def test_the_backfill_bands_the_windows_originals_without_bands_once_and_their_near_copies_are_found(
    make_org, settings
):
    settings.FM_NEAR_DUPLICATES, settings.FM_NEAR_DUPLICATE_WINDOW_DAYS = False, 7  # stored before the rule
    organisation, _ = make_org()
    other, _ = make_org()
    other_story = "Oil prices slump as OPEC output rises and traders brace for a weaker winter demand outlook"
    texts = [STORY, "RT @desk: " + STORY, other_story, "Apple shares rise", STORY.replace("4%", "6%")]
    stored = docs.documents_ingest(organisation=organisation, items=[docs.DocumentIn(text=t) for t in texts])
    story, _, oil, _, old = (o.document_id for o in stored.outcomes)
    theirs = docs.documents_ingest(organisation=other, items=[docs.DocumentIn(text=STORY)]).created[0]
    received = timezone.now() - timedelta(days=2)
    Document.objects.for_org(organisation).update(received_at=received)
    Document.objects.for_org(organisation).filter(pk=old).update(
        received_at=timezone.now() - timedelta(days=8)
    )
    settings.FM_NEAR_DUPLICATES = True
    bands = DocumentBand.objects.for_org(organisation)
    assert not bands.exists()

    counts = near_copies.near_copy_bands_backfill(organisation=organisation, batch=1)
    # the story and the oil story; the copy has its original, "Apple shares rise" is too short, the 8 days
    # old one is outside the window; another organisation's documents are left alone
    assert counts == {"documents": 2, "bands": 2 * near.DEFAULT.bands, "short": 1}
    assert set(bands.values_list("document_id", flat=True)) == {story, oil}
    assert set(bands.values_list("created_at", flat=True)) == {received}  # dated with their document
    assert not DocumentBand.objects.for_org(other).exists()
    assert near_copies.near_copy_bands_backfill(organisation=organisation)["documents"] == 0  # idempotent

    copy = docs.documents_ingest(organisation=organisation, items=[docs.DocumentIn(text=EDITED)])
    assert copy.outcomes[0].copy and copy.outcomes[0].duplicate_of == story
    assert near_copies.near_copy_bands_backfill()["documents"] == 1  # every organisation: the other's one
    assert set(DocumentBand.objects.for_org(other).values_list("document_id", flat=True)) == {theirs}


@pytest.mark.django_db
def test_the_backfill_command_and_task(make_org, settings):
    settings.FM_NEAR_DUPLICATES = False
    organisation, _ = make_org()
    docs.documents_ingest(organisation=organisation, items=[docs.DocumentIn(text=STORY)])
    out = StringIO()
    with pytest.raises(CommandError, match="FM_NEAR_DUPLICATES is off"):
        call_command("near_copy_backfill", "--all", stdout=out)
    settings.FM_NEAR_DUPLICATES = True
    with pytest.raises(CommandError, match="No organisation"):
        call_command("near_copy_backfill", "--org", "no-such-org", stdout=out)
    call_command("near_copy_backfill", "--org", organisation.slug, stdout=out)
    assert "1 documents given 16 bands (0 too short to have any)" in out.getvalue()
    DocumentBand.objects.for_org(organisation).delete()
    assert tasks.backfill_near_copy_bands(organisation.pk) == {"documents": 1, "bands": 16, "short": 0}
    assert tasks.backfill_near_copy_bands(organisation.pk + 10_000) == {"stopped": "gone"}


@pytest.mark.django_db
def test_the_backfill_command_queues_the_task_on_the_default_queue(
    make_org, django_capture_on_commit_callbacks
):
    organisation, _ = make_org()
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("near_copy_backfill", "--org", organisation.slug, "--queue", stdout=out)
    task_id = out.getvalue().split()[3]
    found = None
    with celery_app.connection_for_read() as conn:
        queue = conn.SimpleQueue("default")
        try:
            while found is None:
                message = queue.get(timeout=5)  # raises Empty when the message never came
                message.ack()
                if message.headers.get("id") == task_id:
                    found = message.headers
        finally:
            queue.close()
    assert found["task"] == "finance_monitor.backfill_near_copy_bands"
    assert found["argsrepr"] == repr([organisation.pk])
