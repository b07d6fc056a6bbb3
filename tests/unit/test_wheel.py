"""The scheduling wheel (pure given its clock): every node once per interval,
on its phase, never twice in flight, less often while failing."""

from hypothesis import given, settings
from hypothesis import strategies as st

from farm.model import Node
from farm.polling.scheduling import Wheel, bucket_width


def nodes(count, prefix="n"):
    return [Node(f"{prefix}{i}", "127.0.0.1", 1000 + i) for i in range(count)]


def run(wheel, start, stop, step, complete=True, ok=True):
    fired = []
    t = start
    while t < stop:
        due = wheel.due(t)
        fired += [(t, n.name) for n in due]
        if complete:
            for n in due:
                wheel.done(n.name, ok)
        t += step
    return fired


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 300), st.floats(0.5, 120), st.floats(0, 1e6), st.booleans())
def test_each_node_once_per_interval(count, interval, start, workers_width):
    wheel = Wheel(interval, width=bucket_width(interval) if workers_width else interval / 40)
    wheel.set_nodes(nodes(count))
    start = (int(start / wheel.width) + 0.5) * wheel.width  # mid-bucket: no float edge
    for n in wheel.due(start):  # the wheel starts turning
        wheel.done(n.name, True)
    fired = run(wheel, start + wheel.width, start + interval + wheel.width / 4, wheel.width / 3)
    names = [name for _, name in fired]
    assert sorted(names) == sorted(n.name for n in nodes(count))


def test_buckets_are_a_sixtieth_of_the_interval_between_50_ms_and_1_s():
    assert [bucket_width(i) for i in (0.5, 3, 6, 30, 60, 300, 3600)] == \
        [0.05, 0.05, 0.1, 0.5, 1.0, 1.0, 1.0]


def test_in_flight_nodes_are_not_fired_again_and_failures_back_off():
    wheel = Wheel(10, width=0.5)
    wheel.set_nodes(nodes(50))
    wheel.due(0.0)
    first = run(wheel, 0.5, 10.5, 0.25, complete=False)
    assert len(first) >= 45  # all but those in bucket 0
    assert run(wheel, 10.5, 30.5, 0.25, complete=False) == []  # still in flight
    assert wheel.skipped_busy > 0
    for _, name in first:
        wheel.done(name, ok=False)
    for _, name in first:  # a second failure in a row: every 2nd round
        wheel.done(name, ok=False)
    again = run(wheel, 30.5, 70.5, 0.25, ok=False)
    counts = {}
    for _, name in again:
        counts[name] = counts.get(name, 0) + 1
    # 4 rounds at 2 failures (skip 1), then 3+ failures (skip 3): about 2 polls each
    assert max(counts.values()) <= 2


def test_set_nodes_keeps_state_and_drops_removed():
    wheel = Wheel(10, width=0.5)
    wheel.set_nodes(nodes(20))
    for n in wheel.due(0.0):
        wheel.done(n.name, True)
    fired = run(wheel, 0.5, 10.5, 0.25, complete=False)
    wheel.set_nodes(nodes(10))  # half removed while in flight
    for _, name in fired:
        wheel.done(name, ok=True)  # results of removed nodes are ignored
    later = {name for _, name in run(wheel, 10.5, 20.5, 0.25)}
    assert later == {n.name for n in nodes(10)}


def test_a_node_handed_over_just_after_its_phase_is_polled_at_once():
    """Handed over between workers just after its phase, a node is polled at
    the next tick, not an interval late; one whose phase is long past or
    still ahead waits for it."""
    from farm.polling.scheduling import phase
    wheel = Wheel(10, width=0.05)
    kept = nodes(5)
    wheel.set_nodes(kept)
    candidates = nodes(400, prefix="moved")
    by_phase = {n.name: phase(n.name, 10) for n in candidates}
    now = 50.0 + 6.0  # 6 s into an interval
    just_passed = [n for n in candidates if 5.0 <= by_phase[n.name] < 5.9]
    long_past = [n for n in candidates if 1.0 <= by_phase[n.name] < 3.0]
    ahead = [n for n in candidates if 7.0 <= by_phase[n.name] < 9.0]
    assert just_passed and long_past and ahead
    run(wheel, 50.0, now, 0.05)
    wheel.set_nodes(kept + just_passed + long_past + ahead)
    first = {n.name for n in wheel.due(now + 0.05)}
    assert {n.name for n in just_passed} <= first
    assert not first & {n.name for n in long_past + ahead}
    # later in the round the ones ahead come on their phase, the long-past ones next round
    rest = {name for _, name in run(wheel, now + 0.1, 60.0, 0.05)}
    assert {n.name for n in ahead} <= rest and not rest & {n.name for n in long_past}


def relabelled(count, tag):
    return [Node(f"n{i}", "127.0.0.1", 1000 + i, labels=(("sync", tag),)) for i in range(count)]


def test_a_label_change_and_a_poll_ending_in_either_order_leave_nothing_in_flight():
    """The seam of the old race, driven in both orders through the owner's
    inbox: a label-only change (a CMDB sync) makes new states that copy the
    in-flight flag, and a poll ends just before or just after it."""
    for order in ("change first", "end first"):
        wheel = Wheel(10, width=0.5)
        wheel.set_nodes(relabelled(20, "a"))
        fired = [n.name for n in wheel.due(10.0)] + [n.name for n in wheel.due(19.9)]
        assert wheel.in_flight() == 20 and sorted(fired) == sorted(f"n{i}" for i in range(20))
        if order == "change first":
            wheel.set_nodes(relabelled(20, "b"))
        for name in fired:
            wheel.done(name, True)
        if order == "end first":
            wheel.set_nodes(relabelled(20, "b"))
        assert wheel.in_flight() == 0, order
        again = [n.name for n in wheel.due(25.0)] + [n.name for n in wheel.due(29.9)]
        assert sorted(again) == sorted(fired), order


def test_label_changes_while_polls_end_on_other_threads_lose_no_node():
    """The probe's reproduction: 400 nodes, a poller thread taking due nodes,
    a finisher thread ending their polls, and 1,000 label-only changes from the
    main thread, with thread switches forced often. Before the wheel had one
    owner, 105 nodes stayed in flight for good (never polled again)."""
    import queue
    import sys
    import threading

    count, interval = 400, 2.0
    wheel = Wheel(interval, width=0.05)
    wheel.set_nodes(relabelled(count, "0"))
    polls, stop, drained = queue.SimpleQueue(), threading.Event(), threading.Event()
    clock = [0.0]

    def poller():  # the owner: the only caller of due()
        while not stop.is_set():
            clock[0] += 0.01
            for node in wheel.due(clock[0]):
                polls.put(node.name)

    def finisher():  # ends once the poller has ended and every poll is finished
        while not drained.is_set() or not polls.empty():
            try:
                wheel.done(polls.get(timeout=0.01), True)
            except queue.Empty:
                pass
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=poller), threading.Thread(target=finisher)]
        for t in threads:
            t.start()
        for i in range(1000):
            wheel.set_nodes(relabelled(count, str(i)))
        stop.set()
        threads[0].join(30)
        drained.set()
        threads[1].join(30)
        assert not any(t.is_alive() for t in threads)
    finally:
        sys.setswitchinterval(before)
    assert clock[0] > interval  # the wheel turned while the labels changed
    # every poll has ended: nothing may be in flight, and a whole interval
    # fires every node
    assert wheel.in_flight() == 0
    fired = set()
    for step in range(1, 202):
        fired |= {n.name for n in wheel.due(clock[0] + step * 0.01)}
    assert fired == {f"n{i}" for i in range(count)}
