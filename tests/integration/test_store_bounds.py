"""Every key farm writes per node, and the event stream, stay bounded in size
whatever BMCs answer (a real Redis, farm's own result script)."""

import redis

from farm import store as store_module
from farm.model import Node, PollResult, PowerState


def test_last_error_and_event_stream_are_bounded(store, redis_server, namespace):
    store.import_nodes([Node("n1", "127.0.0.1", 1623, "a", "p")])
    store.write_results([PollResult("n1", 1.0, 0.1, None, "error", "x" * 100_000)])
    assert len(store.node_states(["n1"])["n1"]["last_error"]) == store_module.MAX_ERROR
    store.events_max_len = 100  # [events] max_len
    for i in range(1000):  # a flapping BMC: one power event per result
        store.write_results([PollResult("n1", 2.0 + i, 0.1, PowerState.ON if i % 2 else PowerState.OFF)])
    r = redis.Redis(port=redis_server.port)
    length = r.xlen(f"{namespace}:events")
    assert 100 <= length < 300, length  # MAXLEN ~ trims whole stream nodes (100 entries each)
    sizes = [r.memory_usage(k) for k in r.scan_iter(f"{namespace}:*") if not k.endswith(b":events")]
    assert max(sizes) < 2048, sizes


def test_the_workers_index_forgets_ids_silent_for_a_day(store, redis_server, namespace):
    """Workers killed without forgetting themselves leave their id in the
    index that `farm status` reads; the next report drops those a day old."""
    r = redis.Redis(port=redis_server.port)
    now = store.server_time()
    r.zadd(f"{namespace}:workers", {"killed-long-ago": now - 86_500, "killed-lately": now - 60})
    store.report_worker("alive", {"host": "h"}, 5)
    assert [m.decode() for m in r.zrange(f"{namespace}:workers", 0, -1)] == ["killed-lately", "alive"]
    assert list(store.worker_reports()) == ["alive"]  # no report, not shown
    store.forget_worker("alive")
    assert r.zrange(f"{namespace}:workers", 0, -1) == [b"killed-lately"]
