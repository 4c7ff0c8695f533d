"""`backbone kpis rebuild`: recompute every KPI fact from the beginning of the topics into a new
version of the KPI store while the service keeps the current one up to date, then switch over
once caught up. The service notices the switch in its next batch and continues in the new version
from where the rebuild stopped. An interrupted rebuild resumes where it was on the next call.

Records no consumer can accept were dead-lettered by the service already; the rebuild counts them
and says so rather than dead-lettering them a second time."""

import asyncio
import sys
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.metrics.app import NAME, MetricsSettings
from services.metrics.rollup import SOURCES, Rollup
from services.metrics.store import MetricsStore
from shared.kafka import client_options, ensure_topics
from shared.mongo import make_client


async def rebuild(settings: MetricsSettings, say: Callable[[str], None] = print, progress_seconds: float = 1.0) -> int:
    """Returns the new current version."""
    kafka = settings.kafka
    await ensure_topics(kafka)
    client = make_client(settings.mongo)
    consumer = AIOKafkaConsumer(**client_options(kafka), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                client_id="backbone-metrics-rebuild", request_timeout_ms=kafka.request_timeout_ms)
    try:
        store = MetricsStore(client[settings.mongo.database_prefix + NAME])
        await store.setup()
        version = await store.start_rebuild()
        say(f"rebuilding the KPI store into version {version} (current: {await store.version()})")
        tps = {TopicPartition(kafka.topic(t.name), p) for t in SOURCES for p in range(t.partitions)}
        await consumer.start()
        consumer.assign(list(tps))
        rollup = Rollup(consumer, store, kafka, role="building", version=version,
                        seen_filter_mib=settings.dedupe_filter_mib)
        await rollup.resume(tps)
        started, shown, done_before = time.monotonic(), 0.0, _done(rollup)
        while True:
            await rollup.take(await consumer.getmany(timeout_ms=200, max_records=settings.max_batch_events))
            now = time.monotonic()
            if now - shown < progress_seconds:
                continue
            shown = now
            async with rollup.lock:  # what is stored, not what is being stored
                await rollup.settle()
            # A fetch response's high watermark, not an end-offset request: Tansu answers those
            # short (shared.kafka.log_ends). None until the partition's first fetch.
            ends = {tp: consumer.highwater(tp) for tp in tps}
            done, total = _done(rollup), sum(end or 0 for end in ends.values())
            rate = (done - done_before) / max(now - started, 1e-9)
            say(f"  {done:,} / {total:,} records ({100 * done / max(total, 1):.0f}%), {rate:,.0f} records/s, "
                f"{rollup.refused} refused (dead-lettered by the service)")
            if all(end is not None and (rollup.positions.get(tp) or 0) >= end for tp, end in ends.items()):
                break
        previous = await store.finish_rebuild(version)
        say(f"caught up: version {version} is now current (version {previous} is kept until the next rebuild)")
        return version
    finally:
        await consumer.stop()
        await client.close()


def _done(rollup: Rollup) -> int:
    return sum(p or 0 for p in rollup.positions.values())


def main() -> int:
    try:
        asyncio.run(rebuild(MetricsSettings()))
    except KeyboardInterrupt:
        print("interrupted: run the command again to resume", file=sys.stderr)
        return 130
    return 0
