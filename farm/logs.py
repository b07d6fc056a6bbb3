"""Logging set-up shared by farm's daemons."""

import logging


def setup(level="INFO"):
    logging.basicConfig(level=getattr(logging, level, logging.INFO),
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
