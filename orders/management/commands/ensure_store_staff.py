import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from inventory.models import Location, LocationKind
from orders.demo import DEMO_STORE
from orders.models import StaffAssignment


class Command(BaseCommand):
    help = (
        "Make sure a store staff user (no admin access) exists, works in a store, and print its "
        "credentials for the store pages. Takes OMNI_STORE_USERNAME and OMNI_STORE_PASSWORD from "
        "the environment; otherwise generates a password once and keeps it in "
        "var/store-credentials.txt. A user without a store is assigned to the demo store (or "
        "the first store offering pickup)."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("OMNI_STORE_USERNAME") or "store"
        password = os.environ.get("OMNI_STORE_PASSWORD")
        saved = Path(settings.VAR_DIR) / "store-credentials.txt"
        if not password and saved.exists():
            saved_user, _, saved_password = saved.read_text().strip().partition(":")
            if saved_user == username:
                password = saved_password
        user = User.objects.filter(username=username).first()
        if user is None or password is None or not user.check_password(password):
            password = password or secrets.token_urlsafe(12)
            if user is None:
                user = User.objects.create_user(username=username, password=password)
            else:
                user.set_password(password)
                user.is_active = True
                user.save()
        if not os.environ.get("OMNI_STORE_PASSWORD"):
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(f"{username}:{password}\n")
            saved.chmod(0o600)
        stores = list(
            Location.objects.filter(staff_assignments__user=user)
            .order_by("code")
            .values_list("code", flat=True)
        )
        if not stores:
            store = (
                Location.objects.filter(code=DEMO_STORE, is_active=True).first()
                or Location.objects.filter(
                    kind=LocationKind.STORE, is_active=True, offers_pickup=True
                )
                .order_by("code")
                .first()
            )
            if store is not None:
                StaffAssignment.objects.get_or_create(user=user, location=store)
                stores = [store.code]
        where = f"works at {', '.join(stores)}" if stores else "no store to work in yet"
        self.stdout.write(f"Store staff user: {username}  password: {password}  ({where})")
