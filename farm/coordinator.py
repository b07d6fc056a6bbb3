"""farm-coordinator: leader-elected placement of partitions on workers.

Not built yet (issue: coordinate across hosts). Until then every farm-worker
polls the whole inventory, and this command says so instead of pretending.
"""

import sys

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config-file", type=click.Path(dir_okay=False))
def main(config_file):
    """Coordinate workers (not available yet)."""
    click.echo("farm-coordinator: coordination is not implemented yet; every farm-worker "
               "polls the whole inventory. Run one farm-worker per inventory.", err=True)
    sys.exit(2)
