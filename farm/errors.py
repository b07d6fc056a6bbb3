"""The exceptions farm raises; adapters translate library errors into these."""


class FarmError(Exception):
    """Base of every error farm reports to an operator."""


class ConfigError(FarmError):
    """A configuration value is missing or invalid."""


class InventoryError(FarmError):
    """An inventory file is malformed; nothing was changed."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class BackendUnavailable(FarmError):
    """Redis (or another backend) cannot be reached or failed the operation;
    retrying may help."""


class BackendRefused(FarmError):
    """Redis refused us for good: wrong credentials, or an ACL that lacks a
    command or key farm needs. Retrying cannot help; daemons exit."""


class CredentialsError(FarmError):
    """A stored BMC password cannot be opened (no key, or not the key it was
    sealed with) or its password_file cannot be read."""


class BmcError(FarmError):
    """A BMC could not be polled. `kind` is the label used in state and metrics."""

    kind = "error"


class BmcTimeout(BmcError):
    kind = "timeout"


class BmcAuthError(BmcError):
    kind = "auth"


class BmcPrivilegeError(BmcAuthError):
    """The BMC account's privilege is too low for what was asked (power
    control needs operator): retrying cannot help, a setting on the BMC can."""
    kind = "privilege"


class BmcUnreachable(BmcError):
    kind = "unreachable"


class BmcProtocolError(BmcError):
    kind = "error"


class Fenced(BmcError):
    """A power action not sent: the worker's acting lease ran out before it
    could leave (farm.power.lease). Nothing reached the BMC."""
    kind = "fenced"


class Stopping(BmcError):
    """The worker stopped before the job ended: not the BMC's doing, so the
    worker records no result for it (the node's last one stands)."""
    kind = "stopping"

    def __init__(self, message="worker stopping"):
        super().__init__(message)


class BmcTlsError(BmcError):
    """A Redfish BMC's certificate did not verify (or TLS failed)."""
    kind = "tls"


class BmcSessionLimit(BmcError):
    """A Redfish BMC's session table is full (iDRAC's RAC0218, Redfish's
    Base.SessionLimitExceeded): the credentials may well be right; other
    clients hold the sessions. farm tries again at most once a minute."""
    kind = "session-limit"


class BmcBusy(BmcError):
    """A Redfish BMC answered 503 or 429 for longer than the poll could wait."""
    kind = "busy"
