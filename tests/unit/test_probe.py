"""farm probe's verdict from its trials (pure)."""

from farm.fleet.probe import Trial, report, settings_needed
from farm.model import Node


def t(suite, level, ok):
    return Trial(suite, level, ok, "power on" if ok else "auth: refused", 0.01)


def grid(ok):
    return [t(s, lv, (s, lv) in ok) for s in (17, 3) for lv in ("administrator", "operator", "user")]


def test_defaults_that_work_need_nothing():
    assert settings_needed(grid({(17, "administrator")})) == {}
    assert settings_needed(grid({(3, "administrator"), (3, "operator")})) == {}


def test_a_lower_level_is_named_and_a_suite_only_when_the_defaults_miss_it():
    assert settings_needed(grid({(3, "operator"), (3, "user")})) == {"privilege": "operator"}
    assert settings_needed(grid({(3, "user")}), default_suites=(17,)) == {
        "cipher_suites": [3], "privilege": "user"}


def test_nothing_works():
    found = grid(set())
    assert settings_needed(found) is None
    lines = report(Node("probe", "10.0.0.1", 623, "u", "secret"), found)
    assert "no combination logged in" in lines[-1] and not any("secret" in x for x in lines)
