from django.db import migrations

SQL = """
CREATE OR REPLACE FUNCTION billing_usage_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'the usage ledger is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER billing_usageevent_append_only BEFORE UPDATE OR DELETE ON billing_usageevent
FOR EACH ROW EXECUTE FUNCTION billing_usage_append_only();
"""
REVERSE = """
DROP TRIGGER IF EXISTS billing_usageevent_append_only ON billing_usageevent;
DROP FUNCTION IF EXISTS billing_usage_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SQL)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REVERSE)


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_seed_plans")]
    operations = [migrations.RunPython(forwards, backwards)]
