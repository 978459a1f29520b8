from celery import shared_task

from catalog.services import channel_feed_generate_all


@shared_task(name="catalog.generate_feeds")
def generate_feeds() -> int:
    return len(channel_feed_generate_all())
