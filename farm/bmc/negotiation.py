"""Choices and words of an IPMI login's negotiation (pure): in which order
to propose suites and privilege levels, what a level is called, and what an
operator can change for the refusals a login met."""

from farm.bmc import rmcp


def known_first(known, order):
    """`order` with `known` (what the BMC accepted last) moved to its front."""
    return (known,) + tuple(x for x in order if x != known) if known in order else tuple(order)


def level_name(privilege):
    """4 -> administrator."""
    return LEVELS.get(privilege, str(privilege))


def hint(refusals):
    """What an operator can change, for the refusals seen."""
    text = " ".join(refusals)
    if "(0x0d)" in text and all("(0x0d)" in r for r in refusals if "RAKP 2" in r):
        return " (no level knows this user name: check the node's username)"
    if "(0x01)" in text:
        return (" (0x01 can mean no free session on the BMC, or a suite it lacks: "
                "check its sessions, or set cipher_suites on the node)")
    if any(code in text for code in ("(0x09)", "(0x0a)", "(0x0b)", "(0x80)", "(0x81)")):
        return " (lower the node's privilege, or raise the account's on the BMC)"
    return ""


LEVELS = {v: k for k, v in rmcp.PRIVILEGES.items()}
