"""Real BMCs' misbehaviours (farm-sim --quirk, farm/sim/quirks.py) against
farm's workarounds. FreeIPMI is the oracle that each quirk is the one its
workaround was made for: ipmipower fails without its -W flag and works with
it. farm then fails without the workaround (detection off, no setting),
works with the node's setting, and works with its defaults by detecting it."""

import subprocess

import pytest

from farm.bmc import engine
from farm.model import Node
from farm.tasks.power import PowerPoll
from tests.conftest import script

# quirk -> what farm reports for it when it detects it ("" = farm's login is
# unaffected by design, so there is nothing to detect or set)
QUIRKS = {"intel20": "intel20", "supermicro20": "supermicro20", "sun20": "supermicro20",
          "nochecksumcheck": "nochecksumcheck", "opensesspriv": "", "authcap": ""}


def ipmipower(sim, workaround=None):
    flags = ["-W", workaround] if workaround else []
    out = subprocess.run(["ipmipower", "-D", "LAN_2_0", "-I", "3", *flags, "-h",
                          f"127.0.0.1:{sim.port(0)}", "-u", sim.username, "-p", sim.password,
                          "--session-timeout", "5000", "--stat"],
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def poll(sim, detect=True, workarounds=(), index=0):
    node = Node("q", "127.0.0.1", sim.port(index), sim.username, sim.password,
                workarounds=tuple(workarounds))
    config = engine.EngineConfig(timeout=2.0, retry_interval=0.5, detect_workarounds=detect)
    return engine.run_one(config, PowerPoll.programs, "power", node)


@pytest.mark.parametrize("quirk", sorted(QUIRKS))
def test_each_quirk_is_real_and_farm_copes(quirk, make_sim):
    sim = make_sim(1, engine="lean", quirk=quirk)
    # the oracle: FreeIPMI needs exactly this workaround for this BMC
    assert ipmipower(sim, quirk).endswith(": on")
    assert not ipmipower(sim).endswith(": on")

    reported = QUIRKS[quirk]
    if reported:
        without = poll(sim, detect=False)
        assert not without.ok, without
        assert reported in without.error or "wrong password" in without.error, without
        configured = poll(sim, detect=False, workarounds=[reported])
        assert configured.ok and configured.value.value == "on", configured
    detected = poll(sim)  # farm's defaults
    assert detected.ok and detected.value.value == "on", detected
    assert detected.workarounds == ((reported,) if reported else ()), detected


def test_quirks_only_on_the_fraction_asked(make_sim):
    sim = make_sim(4, engine="lean", quirk="intel20", quirk_fraction=0.5)
    found = [poll(sim, index=k) for k in range(4)]
    assert all(o.ok for o in found)
    assert sorted(o.workarounds for o in found) == [(), (), ("intel20",), ("intel20",)]


def test_farm_probe_names_the_workaround_a_bmc_needs(make_sim, tmp_path):
    sim = make_sim(1, engine="lean", quirk="nochecksumcheck")
    secret = tmp_path / "pw"
    secret.write_text(sim.password + "\n")
    out = subprocess.run([script("farm"), "probe", "127.0.0.1", "--port", str(sim.port(0)),
                          "-u", sim.username, "--password-file", str(secret)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "suite 17 administrator ok       power on (needs workaround nochecksumcheck)" \
        in out.stdout
    assert out.stdout.rstrip().endswith("workarounds: [nochecksumcheck]}")
    assert "Get Channel Cipher Suites: the BMC lists [17, 3]" in out.stdout
    assert sim.password not in out.stdout + out.stderr and out.stderr == ""
