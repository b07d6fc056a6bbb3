"""farm: parallel BMC polling for bare-metal fleets."""

__version__ = "0.1.0"
