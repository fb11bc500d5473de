"""Cleaning up after a previous run of the same data directory, e.g. a node killed with -9.

PR_SET_PDEATHSIG takes instance leaders down with the node, but not what they forked (the
setting is cleared on fork, prctl(2)); and a node may die between fork and prctl. The run
records name every process group the node started, so the next start can finish the job.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal

from courtyard.core import Clock
from courtyard.runtime._config import RuntimeConfig
from courtyard.runtime._records import (
    alive,
    find_leftovers,
    node_is_running,
    read_records,
    remove_record,
    signal_pids,
)

log = logging.getLogger("courtyard.runtime")

POLL = 0.05  # seconds between looks at processes that were asked to stop
KILL_WAIT = 5.0  # after SIGKILL, how long to wait before reporting survivors


async def clean_previous_run(config: RuntimeConfig, clock: Clock) -> None:
    """Stop every process a previous run recorded, then drop its records and working copies.

    Records written by a node process that still runs (another node on the same data
    directory) are left alone, with their working copies.
    """
    records = read_records(config.records_dir)
    live = [r for r in records if node_is_running(r)]
    for record in live:
        log.warning(
            "leaving instance %s alone: node %s (pid %d) that started it still runs",
            record.id,
            record.node_id,
            record.node_pid,
        )
    orphans = [r for r in records if r not in live]
    leftovers = [pid for pids in find_leftovers(orphans).values() for pid in pids]
    if leftovers:
        log.warning("stopping %d process(es) left by a previous run", len(leftovers))
        await stop_pids(leftovers, grace=config.stop_grace, clock=clock)
    for record in orphans:
        remove_record(config.records_dir, record.id)
    await asyncio.to_thread(_remove_working_copies, config, {r.id for r in live})


async def stop_pids(pids: list[int], *, grace: float, clock: Clock) -> None:
    """SIGTERM, up to ``grace`` seconds for them to go, then SIGKILL (not our children)."""
    signal_pids(pids, signal.SIGTERM)
    for patience, then in ((grace, signal.SIGKILL), (KILL_WAIT, None)):
        deadline = clock.monotonic() + patience
        while alive(pids) and clock.monotonic() < deadline:
            await clock.sleep(POLL)
        remaining = alive(pids)
        if not remaining:
            return
        if then is None:
            log.error("processes %s of a previous run survive SIGKILL", remaining)
            return
        signal_pids(remaining, then)


def _remove_working_copies(config: RuntimeConfig, keep: set[str]) -> None:
    folder = config.instances_dir
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)
