"""The ``reverify`` command line: for people (tables, colours) and, with ``--json``, for programs.

Each module of this package adds its commands to the one group with ``register(group)``; they share
:mod:`reverify.streams.cli.common` and never import this package's ``__init__``, so there is no circle.
"""

from __future__ import annotations

import logging
import sys

import click
from reverify.streams.cli import alerts, control, dashboard, experiment, history, notify, replay, slo, stack, webconsole

COMMAND_MODULES = (stack, control, history, dashboard, alerts, notify, replay, slo, experiment, webconsole)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log what the workers and clients do.")
def cli(verbose: bool) -> None:
    """reverify: keep fleets of AI agents honest while they learn."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not verbose:
        logging.getLogger("reverify.sdk.librdkafka").setLevel(logging.CRITICAL)


for _module in COMMAND_MODULES:
    _module.register(cli)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
