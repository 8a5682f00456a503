"""ModelVersion.kind, stored instead of read from the manifest: existing versions get the kind they are
today (an embedder's manifest says task "embedding"; every other version is a classifier)."""

from django.db import migrations, models


def fill_kind(apps, schema_editor):
    ModelVersion = apps.get_model("registry", "ModelVersion")
    ModelVersion._base_manager.filter(manifest__task="embedding").update(kind="embedding")


def clear_kind(apps, schema_editor):
    pass  # the column goes with the reverse of AddField


class Migration(migrations.Migration):
    dependencies = [("registry", "0002_initial")]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="kind",
            field=models.CharField(default="classifier", max_length=32),
        ),
        migrations.RunPython(fill_kind, clear_kind),
    ]
