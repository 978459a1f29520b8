"""Run the campaign tasks from the command line, with progress: what the schedules do.

manage.py run_campaigns detect     # trigger detection for every running campaign
manage.py run_campaigns send       # due steps to messages, messages to their backends
manage.py run_campaigns rollups    # attribution and the dashboard rollups
manage.py run_campaigns all        # the three, in that order
"""

import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Detect campaign triggers, send due messages, refresh attribution and rollups."

    def add_arguments(self, parser):
        parser.add_argument("what", choices=["detect", "send", "rollups", "all"])
        parser.add_argument(
            "--budget",
            type=float,
            default=600,
            help="send: stop starting new batches after this many seconds (default 600)",
        )

    def handle(self, *args, what, budget, **options):
        if what in ("detect", "all"):
            self._detect()
        if what in ("send", "all"):
            self._send(budget)
        if what in ("rollups", "all"):
            self._rollups()

    def _detect(self):
        from campaigns.services.detection import triggers_detect

        started = time.monotonic()

        def progress(campaign, added):
            self.stdout.write(f"  {campaign.name}: {added} new enrolments")

        self.stdout.write("Detecting triggers...")
        result = triggers_detect(progress=progress)
        self.stdout.write(
            self.style.SUCCESS(
                f"Detection: {result.total} new enrolments in {result.campaigns} running "
                f"campaigns, {time.monotonic() - started:.1f}s."
            )
        )

    def _send(self, budget):
        from campaigns.services.sending import messages_send

        started = time.monotonic()

        def progress(result):
            self.stdout.write(
                f"  {result.claimed} steps claimed, {result.queued} queued, "
                f"{result.sent + result.delivered} sent, {result.failed} failed, "
                f"{time.monotonic() - started:.1f}s"
            )

        self.stdout.write("Sending due messages...")
        result = messages_send(budget_seconds=budget, progress=progress).as_dict()
        suppressed = ", ".join(f"{k} {v}" for k, v in result["suppressed"].items()) or "none"
        deferred = ", ".join(f"{k} {v}" for k, v in result["deferred"].items()) or "none"
        exited = ", ".join(f"{k} {v}" for k, v in result["exited"].items()) or "none"
        self.stdout.write(
            self.style.SUCCESS(
                f"Sending: {result['sent'] + result['delivered']} sent "
                f"({result['delivered']} known delivered), {result['retrying']} to retry, "
                f"{result['failed']} failed; suppressed: {suppressed}; deferred: {deferred}; "
                f"exited: {exited}; {result['recovered']} interrupted sends resumed, "
                f"{result['abandoned']} marked unknown; {time.monotonic() - started:.1f}s."
            )
        )

    def _rollups(self):
        from campaigns.services.rollups import campaign_figures_refresh

        started = time.monotonic()
        rollups = campaign_figures_refresh()
        attributed = rollups.pop("attributed")
        self.stdout.write(f"  {attributed} orders attributed to campaign messages")
        self.stdout.write(
            self.style.SUCCESS(f"Rollups refreshed: {rollups}; {time.monotonic() - started:.1f}s.")
        )
