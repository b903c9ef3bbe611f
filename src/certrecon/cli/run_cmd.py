from __future__ import annotations

import asyncio
import signal

import click

from certrecon.cli.common import load_settings
from certrecon.embedded import endpoints as embedded_or_configured
from certrecon.logs import get_logger


@click.command()
def run() -> None:
    """Run the always-on worker until SIGTERM or SIGINT."""
    from certrecon.worker.bootstrap import build_worker
    from certrecon.worker.runtime import settle_heap

    settings = load_settings()
    log = get_logger("certrecon.run")
    with embedded_or_configured(settings) as endpoints:
        if endpoints.embedded:
            log.info("embedded services started", services=list(endpoints.embedded))

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            worker = build_worker(
                settings, dsn=endpoints.database_url, bootstrap=endpoints.kafka_bootstrap
            )
            await worker.run(stop)

        # Everything is imported and configured by now: what is alive stays alive.
        settle_heap()
        asyncio.run(main())
