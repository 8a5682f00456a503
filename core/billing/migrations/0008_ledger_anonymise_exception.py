"""The ledger stays append-only, with one exception: anonymising a deleted organisation's lines.

``core.privacy.services.organisation_delete`` sets ``trellis.ledger_anonymise`` to ``on`` for its own
transaction only (``SET LOCAL``); with it, an UPDATE may change a line's API key, idempotency key and metadata
and nothing else (meter, quantity, organisation and time stay as they were). DELETE is always refused.
"""

from django.db import migrations

SQL = """
CREATE OR REPLACE FUNCTION billing_usage_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'UPDATE'
     AND current_setting('trellis.ledger_anonymise', true) = 'on'
     AND NEW.id = OLD.id AND NEW.organisation_id = OLD.organisation_id AND NEW.meter = OLD.meter
     AND NEW.quantity = OLD.quantity AND NEW.created_at = OLD.created_at
     AND NEW.updated_at = OLD.updated_at THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'the usage ledger is append-only';
END;
$$ LANGUAGE plpgsql;
"""
REVERSE = """
CREATE OR REPLACE FUNCTION billing_usage_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'the usage ledger is append-only';
END;
$$ LANGUAGE plpgsql;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SQL)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REVERSE)


class Migration(migrations.Migration):
    dependencies = [("billing", "0007_open_meters")]
    operations = [migrations.RunPython(forwards, backwards)]
