import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Make sure an admin user exists and print its credentials. Takes OMNI_ADMIN_USERNAME, "
        "OMNI_ADMIN_PASSWORD and OMNI_ADMIN_EMAIL from the environment; otherwise generates a "
        "password once and keeps it in var/admin-credentials.txt."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("OMNI_ADMIN_USERNAME") or "admin"
        email = os.environ.get("OMNI_ADMIN_EMAIL") or "admin@example.com"
        password = os.environ.get("OMNI_ADMIN_PASSWORD")
        store = Path(settings.VAR_DIR) / "admin-credentials.txt"
        if not password and store.exists():
            saved_user, _, saved_password = store.read_text().strip().partition(":")
            if saved_user == username:
                password = saved_password
        user = User.objects.filter(username=username).first()
        if user is None or password is None or not user.check_password(password):
            password = password or secrets.token_urlsafe(12)
            if user is None:
                user = User.objects.create_superuser(
                    username=username, email=email, password=password
                )
            else:
                user.set_password(password)
                user.is_staff = user.is_superuser = user.is_active = True
                user.save()
        if not os.environ.get("OMNI_ADMIN_PASSWORD"):
            store.parent.mkdir(parents=True, exist_ok=True)
            store.write_text(f"{username}:{password}\n")
            store.chmod(0o600)
        self.stdout.write(f"Admin user: {username}  password: {password}")
