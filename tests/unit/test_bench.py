"""The benchmarks' pure parts: report blocks, percentiles, gaps."""

from bench import report
from bench.common import median, percentile
from bench.sampling import Sampler


def test_section_replaces_only_its_block(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text("# B\n\nprose one\n\n<!-- bench:x -->\nold\n<!-- /bench:x -->\n\nprose two\n")
    report.section("x", "| a |\n|---|\n| 1 |", path=doc, machine="m")
    text = doc.read_text()
    assert "old" not in text and "| 1 |" in text and "Machine: m." in text
    assert text.startswith("# B\n\nprose one\n") and text.endswith("prose two\n")
    report.section("y", "new block", path=doc, machine="m")
    text = doc.read_text()
    assert text.count("<!-- bench:x -->") == 1 and text.rstrip().endswith("<!-- /bench:y -->")


def test_table():
    assert report.table(["a", "b"], [[1, None]]) == "| a | b |\n|---|---|\n| 1 |  |"


def test_percentile_and_median():
    values = list(range(100))
    assert percentile(values, 0.5) == 50 and percentile(values, 0.99) == 99 and percentile([], 0.5) is None
    assert median([3, None, 1, 2]) == 2 and median([None]) is None


class FakeStore:
    def __init__(self):
        self.states = {}

    def node_states(self, names):
        return {n: self.states.get(n, {}) for n in names}


def test_sampler_staleness_and_gaps():
    store = FakeStore()
    sampler = Sampler(store, ["a", "b"], started=1000.0, period=1.0)
    for ok_at in (1001.0, 1003.0, 1009.0):
        store.states["a"] = {"last_ok_at": str(ok_at), "worker": "w1"}
        sampler.sample()
    assert [t for t, _ in sampler.polls["a"]] == [1001.0, 1003.0, 1009.0]
    assert sampler.polls["b"] == [] and sampler.series[-1][4] == 1  # b never polled
    assert sampler.gaps(1002.0, 1010.0) == {"a": 6.0}
    assert sampler.gaps(1004.0, 1008.0) == {}
