"""The monitor's default datasets (its shipped twitter financial news rows, made for an organisation when its
default models are trained) are the platform's rows, not the organisation's: marked ``shipped``, so they no
longer count in its stored records (a trial's 10,000 were 8,000 spent by the defaults before it uploaded a
thing, and a second install of the defaults after a cancelled one was refused for the quota)."""

from django.db import migrations

SOURCE = "finance_monitor/data/twitter_financial_news/"  # as ``services.defaults`` names their origin
NAMES = ("Finance monitor topic (default)", "Finance monitor sentiment (default)")


def mark(apps, schema_editor):
    Dataset = apps.get_model("registry", "Dataset")
    Dataset._default_manager.filter(name__in=NAMES, source_filename__startswith=SOURCE).update(shipped=True)


class Migration(migrations.Migration):
    dependencies = [
        ("finance_monitor", "0011_record_links_text_form"),
        ("registry", "0004_dataset_shipped"),
    ]

    operations = [
        migrations.RunPython(mark, migrations.RunPython.noop),
    ]
