"""``python -m courtyard.gateway``: run gateway worker processes (see ``--help``); given
``--tls-cert`` and ``--tls-key``, every worker's port serves TLS only.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from courtyard.gateway._config import GatewayError
from courtyard.gateway._tls import server_context
from courtyard.gateway._worker import (
    WorkerOptions,
    build_parser,
    parse_args,
    run_worker,
    supervise,
)
from courtyard.transport import configure_logging


def _add_tls_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    group = parser.add_argument_group("TLS (both or neither; without them the port is plain HTTP)")
    group.add_argument("--tls-cert", help="PEM certificate chain the port serves TLS with")
    group.add_argument("--tls-key", help="PEM private key of --tls-cert (not encrypted)")
    return parser


def parse_command(argv: list[str]) -> tuple[WorkerOptions, int]:
    """The options of one worker, TLS included, and the number of workers asked for.

    A certificate or key that cannot be loaded raises TlsInvalid here, before any worker
    process starts, so a bad pair is one error line rather than N crashing workers.
    """
    # The full parser answers --help and usage errors naming every flag, TLS ones included.
    tls = _add_tls_arguments(build_parser()).parse_args(argv)
    rest = _add_tls_arguments(argparse.ArgumentParser(add_help=False)).parse_known_args(argv)[1]
    options, workers = parse_args(rest)
    config = dataclasses.replace(options.config, tls_cert=tls.tls_cert, tls_key=tls.tls_key)
    if config.tls_cert and config.tls_key:
        server_context(config.tls_cert, config.tls_key)
    return dataclasses.replace(options, config=config), workers


def run(argv: list[str]) -> int:
    """Run the command line ``argv``; the exit status (2 with one line on a bad setting)."""
    level = os.environ.get("COURTYARD_LOG_LEVEL", "INFO").upper()
    configure_logging("gateway", level=level)
    try:
        options, workers = parse_command(argv)
        if workers > 1:
            return supervise(argv, workers)  # each child parses the same flags again
        return run_worker(options)
    except GatewayError as exc:
        print(f"courtyard.gateway: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
