from django.db import migrations

PLANS = [
    # code, name, price (cents/month), trial days, predictions, training jobs, GPU minutes, API calls,
    # models, seats, stored records, requests per minute per key
    ("trial", "Free trial", 0, 14, 2_000, 5, 30, 10_000, 3, 3, 10_000, 60),
    ("pro", "Pro", 49_000, None, 250_000, 100, 600, 1_000_000, 25, 15, 1_000_000, 600),
    (
        "enterprise",
        "Enterprise",
        290_000,
        None,
        5_000_000,
        1_000,
        6_000,
        20_000_000,
        250,
        200,
        20_000_000,
        3_000,
    ),
]


def seed(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for code, name, price, trial, pred, jobs, gpu, calls, models, seats, records, rpm in PLANS:
        Plan.objects.update_or_create(
            code=code,
            defaults=dict(
                name=name,
                price_cents=price,
                trial_days=trial,
                predictions_per_month=pred,
                training_jobs_per_month=jobs,
                gpu_minutes_per_month=gpu,
                api_calls_per_month=calls,
                max_models=models,
                max_seats=seats,
                max_stored_records=records,
                requests_per_minute=rpm,
            ),
        )


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
