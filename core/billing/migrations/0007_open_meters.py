"""Open metering: meters become rows (``MeterDefinition``) and a plan's limits become ``PlanLimit`` rows.

Every plan's seven limit columns are copied into PlanLimit rows for core's seven meters (the values each plan
has now, edited ones included), then the columns go. Subscriptions, usage counters and ledger lines are not
touched: they name meters by code, which stays. Reversible: going back puts the columns back from the rows.
"""

import django.db.models.deletion
from django.db import migrations, models

# column -> (meter code, kind, unit, label), in the order meters are listed
COLUMNS = {
    "predictions_per_month": ("predictions", "flow", "prediction", "Predictions"),
    "training_jobs_per_month": ("training_jobs", "flow", "training job", "Training jobs"),
    "gpu_minutes_per_month": ("gpu_minutes", "flow", "minute", "GPU minutes"),
    "api_calls_per_month": ("api_calls", "flow", "call", "API calls"),
    "max_models": ("models", "stock", "model", "Models"),
    "max_seats": ("seats", "stock", "seat", "Seats"),
    "max_stored_records": ("stored_records", "stock", "record", "Stored records"),
}


def columns_to_rows(apps, schema_editor):
    MeterDefinition = apps.get_model("billing", "MeterDefinition")
    Plan = apps.get_model("billing", "Plan")
    PlanLimit = apps.get_model("billing", "PlanLimit")
    for code, kind, unit, label in COLUMNS.values():
        MeterDefinition.objects.update_or_create(
            code=code, defaults={"kind": kind, "unit": unit, "label": label}
        )
    PlanLimit.objects.bulk_create(
        PlanLimit(plan=plan, meter_id=code, limit=getattr(plan, column))
        for plan in Plan.objects.all()
        for column, (code, *_rest) in COLUMNS.items()
    )


def rows_to_columns(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    PlanLimit = apps.get_model("billing", "PlanLimit")
    codes = {code: column for column, (code, *_rest) in COLUMNS.items()}
    for plan in Plan.objects.all():
        for row in PlanLimit.objects.filter(plan=plan, meter_id__in=codes):
            setattr(plan, codes[row.meter_id], row.limit)
        plan.save()


class Migration(migrations.Migration):
    dependencies = [("billing", "0006_idempotency_record")]

    operations = [
        migrations.CreateModel(
            name="MeterDefinition",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("code", models.SlugField(max_length=32, unique=True)),
                (
                    "kind",
                    models.CharField(
                        choices=[("flow", "Flow (per month)"), ("stock", "Stock (now)")], max_length=5
                    ),
                ),
                ("unit", models.CharField(max_length=40)),
                ("label", models.CharField(max_length=60)),
            ],
            options={"ordering": ["id"]},
        ),
        migrations.CreateModel(
            name="PlanLimit",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("limit", models.PositiveBigIntegerField()),
                (
                    "meter",
                    models.ForeignKey(
                        db_column="meter",
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="billing.meterdefinition",
                        to_field="code",
                    ),
                ),
                (
                    "plan",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="limit_rows",
                        to="billing.plan",
                    ),
                ),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("plan", "meter"), name="uniq_plan_limit")]
            },
        ),
        migrations.RunPython(columns_to_rows, rows_to_columns),
        # A default first, so that going back can re-add the columns to a table that has rows.
        *(
            migrations.AlterField(
                model_name="plan", name=column, field=models.PositiveIntegerField(default=0)
            )
            for column in COLUMNS
        ),
        *(migrations.RemoveField(model_name="plan", name=column) for column in COLUMNS),
        migrations.AlterField(model_name="usagecounter", name="meter", field=models.CharField(max_length=32)),
        migrations.AlterField(model_name="usageevent", name="meter", field=models.CharField(max_length=32)),
    ]
