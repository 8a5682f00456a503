"""The MovieLens import command on a tiny GroupLens-format folder written here (the tests never read the real
data): movies become items with their genres, ratings become rating events; a second run stores nothing
twice; bad rows, a missing folder or column, an unknown organisation and the catalogue quota: clear errors."""

import io

import pytest
from django.core.management import CommandError, call_command

from core.billing.models import Plan, PlanLimit
from recommender.models import Event, Item

pytestmark = pytest.mark.django_db

MOVIES = """movieId,title,genres
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy
2,"American President, The (1995)",Comedy|Drama|Romance
3,Untitled (2020),(no genres listed)
"""
RATINGS = """userId,movieId,rating,timestamp
1,1,4.0,964982703
1,2,3.5,964981247
2,1,5.0,964982224
2,3,7.0,964982931
2,99,4.0,964982931
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "movies.csv").write_text(MOVIES)
    (tmp_path / "ratings.csv").write_text(RATINGS)
    return tmp_path


def _run(**options) -> str:
    out = io.StringIO()
    call_command("recommender_import_movielens", stdout=out, **options)
    return out.getvalue()


def test_movies_and_ratings_are_imported_once(folder, make_org):
    org, _ = make_org()
    output = _run(org=org.slug, path=str(folder))
    assert "3 movies added" in output and "3 ratings stored" in output and "2 rows rejected" in output
    assert "ratings.csv:5: a rating's value is from 0 to 5" in output
    assert "ratings.csv:6: unknown item '99'" in output
    toy = Item.objects.for_org(org).get(external_id="1")
    assert toy.title == "Toy Story (1995)" and toy.categories[:2] == ["Adventure", "Animation"]
    assert "Animation" in toy.description
    assert Item.objects.for_org(org).get(external_id="2").title == "American President, The (1995)"
    assert Item.objects.for_org(org).get(external_id="3").categories == []
    rating = Event.objects.for_org(org).get(external_id="ml-1-2")
    assert rating.type == "rating" and rating.value == 3.5 and rating.user == "1"
    assert rating.occurred_at.timestamp() == 964981247
    again = _run(org=str(org.pk), path=str(folder))  # by id, a second time
    assert "0 movies added, 3 updated" in again and "0 ratings stored, 3 already there" in again
    assert Event.objects.for_org(org).count() == 3


def test_bad_folders_organisations_and_quota(folder, tmp_path, make_org):
    org, _ = make_org()
    with pytest.raises(CommandError, match="No organisation"):
        _run(org="no-such-org", path=str(folder))
    with pytest.raises(CommandError, match="movies.csv and ratings.csv"):
        _run(org=org.slug, path=str(tmp_path / "nowhere"))
    (folder / "ratings.csv").write_text("userId,movieId,score\n1,1,4\n")
    with pytest.raises(CommandError, match="lacks the columns rating, timestamp"):
        _run(org=org.slug, path=str(folder))
    assert Item.objects.for_org(org).count() == 0  # nothing stored before the check
    (folder / "ratings.csv").write_text(RATINGS)
    trial = Plan.objects.get(code="trial")
    PlanLimit.objects.update_or_create(plan=trial, meter_id="catalogue_items", defaults={"limit": 2})
    with pytest.raises(CommandError, match="adds 3 catalogue items"):
        _run(org=org.slug, path=str(folder))
    assert Item.objects.for_org(org).count() == 0


def test_the_help_says_research_only():
    from recommender.management.commands.recommender_import_movielens import Command

    assert "research use only" in Command.help and "never sell" in Command.help
