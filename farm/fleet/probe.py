"""`farm probe`: find the IPMI settings one BMC needs, by trying them.

Every cipher suite farm speaks is tried at every privilege level, each alone
(the node's settings exact, so a refusal is the BMC's answer to that one
combination, not farm's fallback). A login that works reads the chassis
status (power), so "works" means what a poll needs. The findings name each
refusal and end with the inventory entry to use: empty settings when farm's
defaults (suites 17 then 3, administrator falling back) already work.
"""

import dataclasses

from farm import errors
from farm.bmc import engine as bmc_engine
from farm.bmc.rmcp import PRIVILEGES, SUITES
from farm.model import Node
from farm.tasks.power import PowerPoll

LEVELS = ("administrator", "operator", "user")
OPERATOR = PRIVILEGES["operator"]


@dataclasses.dataclass(frozen=True)
class Trial:
    suite: int
    privilege: str
    ok: bool
    detail: str        # the power state read, or why the BMC refused
    latency: float
    workarounds: tuple = ()  # the ones the login found the BMC needs


def trials(node, timeout=3.0, run=bmc_engine.run_one):
    """One Trial per (suite, privilege), strongest first."""
    config = bmc_engine.EngineConfig(timeout=timeout, keepalive=False)
    out = []
    for suite in sorted(SUITES, reverse=True):
        for level in LEVELS:
            one = dataclasses.replace(node, cipher_suites=(suite,), privilege=level)
            outcome = run(config, PowerPoll.programs, "power", one)
            if outcome is None:
                out.append(Trial(suite, level, False, "no outcome", timeout))
            elif outcome.ok:
                out.append(Trial(suite, level, True, f"power {outcome.value.value}",
                                 outcome.latency, outcome.workarounds))
            else:
                out.append(Trial(suite, level, False, f"{outcome.error_kind}: {outcome.error}",
                                 outcome.latency))
    return out


def settings_needed(found, default_suites=(17, 3)):
    """The per-node settings that make farm's login work at the best level
    found: {} when the defaults do, None when nothing works."""
    working = [t for t in found if t.ok]
    if not working:
        return None
    best = max(working, key=lambda t: (PRIVILEGES[t.privilege], t.suite))
    out = {}
    # farm's default: the first of default_suites the BMC accepts at that level
    suites_ok = [s for s in default_suites
                 if any(t.ok and t.suite == s and t.privilege == best.privilege for t in found)]
    if not suites_ok:
        out["cipher_suites"] = [best.suite]
    if best.privilege != "administrator":
        # the fallback would find it too, at the cost of refusals on every
        # first login; saying it keeps the node's login to one try
        out["privilege"] = best.privilege
    if best.workarounds:
        # detected anyway; saying them spares the detection and shows them
        out["workarounds"] = list(best.workarounds)
    return out


def report(node, found, offered=None):
    """Lines for the operator (pure)."""
    lines = [f"probing {node.address}:{node.port} as {node.username}"]
    if offered is None:
        lines.append("  Get Channel Cipher Suites: no answer (farm does not need one: it "
                     "proposes its suites in turn)")
    else:
        lines.append(f"  Get Channel Cipher Suites: the BMC lists {offered}")
    for t in found:
        mark = "ok     " if t.ok else "refused"
        found_ = f" (needs workaround {', '.join(t.workarounds)})" if t.workarounds else ""
        lines.append(f"  suite {t.suite:>2} {t.privilege:<13} {mark}  {t.detail}{found_}")
    needed = settings_needed(found)
    if needed is None:
        lines.append("no combination logged in: check the address, user name, password and "
                     "K_g key; the refusals above say which step failed")
        return lines
    best = [t for t in found if t.ok]
    top = max(PRIVILEGES[t.privilege] for t in best)
    if top < OPERATOR:
        lines.append("note: this account cannot control power (it needs operator); farm "
                     "will poll it, and refuse power actions on it")
    settings = "".join(f", {k}: {v}".replace("'", "") for k, v in needed.items())
    lines.append("settings needed: " + (", ".join(needed) if needed else "none (farm's defaults work)"))
    lines.append(f"inventory entry: - {{name: NAME, address: {node.address}, port: {node.port}, "
                 f"username: {node.username}, password_file: PATH{settings}}}")
    return lines


def offered_suites(address, port, timeout=1.0):
    """The cipher suites the BMC lists in Get Channel Cipher Suites, or None
    if it does not answer (ipmi_sim does not). Asked before any session, a
    part of 16 bytes at a time, each part tried twice."""
    import socket

    from farm.bmc import rmcp
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    records = b""
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        for index in range(8):  # 8 parts of 16 bytes: more than any BMC lists
            data = bytes([0x0E, 0x00, 0x80 | index])
            request = rmcp.ipmi15_wrap(rmcp.ipmi_request(0x06, 0x54, index, data))
            part = None
            for _ in range(2):
                try:
                    sock.sendto(request, (address, port))
                    _, _, _, code, body = rmcp.ipmi_response(rmcp.ipmi15_unwrap(
                        sock.recv(512)))
                except (OSError, errors.BmcError):
                    continue
                part = body[1:] if code == 0 and body else b""
                break
            if part is None:
                return None if index == 0 else rmcp.cipher_suite_ids(records)
            records += part
            if len(part) < 16:
                break
    return rmcp.cipher_suite_ids(records)


def probe_node(address, port, username, password, kg=""):
    return Node("probe", address, port, username, password, kg=kg)
