"""Tell listening connections when an API client changes, so their token caches forget it.

PostgreSQL only (``omni.api.token_cache`` caches nothing elsewhere). ``NOTIFY`` is sent when the
changing transaction commits, and not at all when it rolls back. An update that only moves
``last_used_at`` (recorded at most every five minutes on use) says nothing: it changes no one's
access.
"""

from django.db import migrations

FORWARD = """
CREATE FUNCTION omni_api_client_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('omni_api_clients', '*');
    ELSIF TG_OP = 'DELETE'
        OR (to_jsonb(OLD) - 'last_used_at') IS DISTINCT FROM (to_jsonb(NEW) - 'last_used_at') THEN
        PERFORM pg_notify('omni_api_clients', OLD.id::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER omni_api_client_notify
    AFTER UPDATE OR DELETE ON omni_apiclient
    FOR EACH ROW EXECUTE FUNCTION omni_api_client_notify();
CREATE TRIGGER omni_api_client_notify_truncate
    AFTER TRUNCATE ON omni_apiclient
    FOR EACH STATEMENT EXECUTE FUNCTION omni_api_client_notify();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS omni_api_client_notify_truncate ON omni_apiclient;
DROP TRIGGER IF EXISTS omni_api_client_notify ON omni_apiclient;
DROP FUNCTION IF EXISTS omni_api_client_notify();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("omni", "0002_default_channels")]

    operations = [migrations.RunPython(forward, backward)]
