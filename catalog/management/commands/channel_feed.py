from django.core.management.base import BaseCommand, CommandError

from catalog.services import channel_feed_generate
from omni.exceptions import OmniError
from omni.models import Channel


class Command(BaseCommand):
    help = "Write the feed file of one sales channel, or of every active one with --all."

    def add_arguments(self, parser):
        parser.add_argument("codes", nargs="*", help="Channel codes")
        parser.add_argument("--all", action="store_true", help="Every active sales channel")

    def handle(self, *args, codes, all, **options):
        if all:
            channels = list(Channel.objects.sales().active().order_by("code"))
        elif codes:
            channels = list(Channel.objects.filter(code__in=codes))
            missing = sorted(set(codes) - {c.code for c in channels})
            if missing:
                raise CommandError(f"Unknown channel(s): {', '.join(missing)}")
        else:
            raise CommandError("Give channel codes or --all.")
        failed = []
        for index, channel in enumerate(channels, start=1):
            self.stderr.write(f"[{index}/{len(channels)}] {channel.code}...")
            try:
                feed = channel_feed_generate(channel=channel)
            except OmniError as exc:
                # One channel's bad settings must not keep the others' feeds stale.
                self.stderr.write(self.style.ERROR(f"{channel.code}: {exc}"))
                failed.append(channel.code)
                continue
            self.stdout.write(f"{channel.code}: {feed.last_row_count} rows -> {feed.last_file}")
        if failed:
            raise CommandError(f"Feeds not written for: {', '.join(failed)}")
