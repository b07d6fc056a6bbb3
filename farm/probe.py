"""`farm probe`: find the IPMI settings one BMC needs, by trying them.

Every cipher suite farm speaks is tried at every privilege level, each alone
(the node's settings exact, so a refusal is the BMC's answer to that one
combination, not farm's fallback). A login that works reads the chassis
status (power), so "works" means what a poll needs. The findings name each
refusal and end with the inventory entry to use: empty settings when farm's
defaults (suites 17 then 3, administrator falling back) already work.
"""

import dataclasses

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


def report(node, found):
    """Lines for the operator (pure)."""
    lines = [f"probing {node.address}:{node.port} as {node.username}"]
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


def probe_node(address, port, username, password, kg=""):
    return Node("probe", address, port, username, password, kg=kg)
