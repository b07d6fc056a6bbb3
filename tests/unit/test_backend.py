"""The backend URL: parsed once for redis-py and tooz, redacted whatever it holds."""

import inspect

import pytest
from hypothesis import given
from hypothesis import strategies as st

from farm.coordination import backend
from farm.errors import ConfigError

SECRETS = ["Top#Secret/Pw?x", "p@ss:w/rd%x", "a b'c\"d", "hunter2", "::@@//??##"]


@pytest.mark.parametrize("secret", SECRETS)
def test_redaction_never_depends_on_parsing(secret):
    for url in (f"redis://:{secret}@127.0.0.1:6380/0", f"redis://farm:{secret}@h:1?db=2",
                f"rediss://{secret}@h"):
        shown = backend.redact(url)
        assert secret not in shown and "***" in shown, shown
    assert secret not in backend.redact(f"redis://h:1?password={secret.replace('&', '')}")


@given(st.text(min_size=4, alphabet=st.characters(blacklist_categories=("Cs",))))
def test_no_password_survives_redaction(secret):
    url = f"redis://user:{secret}@127.0.0.1:6379/0"
    assert secret not in backend.redact(url).split("user:", 1)[1] or secret in "***@127.0.0.1:6379/0"


def test_redaction_inside_messages():
    msg = "cannot reach redis://u:p4ss@h:1/0 now"
    assert backend.redact(msg) == "cannot reach redis://u:***@h:1/0 now"
    assert backend.redact("redis://127.0.0.1:6379") == "redis://127.0.0.1:6379"


@pytest.mark.parametrize("url,password", [
    ("redis://:Top#Secret/Pw?x@127.0.0.1:6380", "Top#Secret/Pw?x"),
    ("redis://u2:p%40ss%3Aw%2Frd%25x@127.0.0.1:6380", "p@ss:w/rd%x"),
    ("redis://u2:p@ss@127.0.0.1:6380", "p@ss"),
])
def test_passwords_with_special_characters(url, password):
    b = backend.parse(url)
    assert b.password == password and b.host == "127.0.0.1" and b.port == 6380
    assert password not in repr(b) and password not in b.where


def test_tls_spellings_agree_and_feed_both_libraries():
    a = backend.parse("rediss://h:7000/3?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem")
    b = backend.parse("redis://h:7000/3?ssl=true&ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem")
    assert a.redis_kwargs() == b.redis_kwargs()
    assert a.redis_kwargs()["ssl"] is True and a.redis_kwargs()["ssl_ca_certs"] == "/ca.pem"
    assert a.tooz_options() == {"db": "3", "ssl": "true", "ssl_ca_certs": "/ca.pem",
                                "ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem"}


def test_sentinel_url():
    b = backend.parse("redis://:pw@s1:26379?sentinel=mymaster&sentinel_fallback=s2:26380"
                      "&sentinel_fallback=s3")
    assert b.sentinel == "mymaster"
    assert b.sentinels == (("s1", 26379), ("s2", 26380), ("s3", 26379))
    assert "host" not in b.redis_kwargs() and b.redis_kwargs()["password"] == "pw"
    assert b.tooz_options()["sentinel_fallback"] == ["s2:26380", "s3:26379"]


@pytest.mark.parametrize("url,words", [
    ("http://h:1", "expected redis://"),
    ("redis://h:99999", "out of range"),
    ("redis://h:1/zero", "not a number"),
    ("redis://h:1?ssl_ca_certs=/x", "without rediss"),
    ("redis://h:1?bogus=1", "unknown option"),
    ("redis://:s3cr3t@h:1?bogus=1", "unknown option"),
])
def test_bad_urls_are_clear_errors(url, words):
    with pytest.raises(ConfigError) as err:
        backend.parse(url)
    assert words in str(err.value) and "s3cr3t" not in str(err.value)


def test_tooz_redis_driver_keeps_the_shape_farm_builds_it_with():
    """farm builds tooz's Redis driver from parts (farm.coordination.membership.redis_coordinator):
    this fails when tooz changes the constructor get_coordinator calls."""
    from tooz.drivers import redis as tooz_redis

    from farm.coordination.membership import redis_coordinator, tooz_options
    params = list(inspect.signature(tooz_redis.RedisDriver.__init__).parameters)
    assert params == ["self", "member_id", "parsed_url", "options"]
    b = backend.parse("redis://u:p%23w@127.0.0.1:1/2?ssl=true")
    coord = redis_coordinator(b, b"me", tooz_options("ns", 10, 10))
    assert isinstance(coord, tooz_redis.RedisDriver)


def test_async_reader_errors_are_farms_without_the_password():
    """farm.store.aio translates redis-py's errors as the Store does."""
    import asyncio

    from farm.errors import BackendUnavailable
    from farm.sim.ports import free_tcp_port
    from farm.store.aio import AsyncReader
    url = f"redis://:Secret-Redis-pw@127.0.0.1:{free_tcp_port()}"  # nothing listens there

    async def read():
        reader = AsyncReader(url, "ns", socket_timeout=1.0)
        try:
            await reader.exporter_view("n1")
        finally:
            await reader.close()
    with pytest.raises(BackendUnavailable) as caught:
        asyncio.run(read())
    assert "Secret-Redis-pw" not in str(caught.value) and "node read" in str(caught.value)
    assert caught.value.__cause__ is not None
