"""The private parts of other libraries farm relies on (tooz's versions are
pinned in setup.py): each test fails when the part changes shape."""

import inspect
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from tooz import hashring
from tooz.drivers import redis as tooz_redis

from farm.coordination import placement


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=16), st.integers(1, 4), min_size=1, max_size=8))
def test_placements_ring_is_toozs(members):
    """farm.coordination.placement builds its ring itself (pure, no tooz
    import) with the points tooz.hashring.HashRing makes, so a coordinator of
    an older farm, which read tooz's ring, places partitions the same way
    during a rolling upgrade. Reads tooz's private `_ring` to compare."""
    ring = hashring.HashRing([], partitions=8)
    for member in sorted(members):
        ring.add_node(member, weight=members[member])
    assert placement.ring_points(members, points=8) == ring._ring


def test_leader_lock_name_and_acquired_locks():
    """farm.coordination.membership.stand_down releases tooz's leader lock itself (tooz
    has no public 'resign'): it finds it in _acquired_locks by its name."""
    source = inspect.getsource(tooz_redis.RedisLock.__init__)
    assert re.search(r"name = b'%s_%s_lock' % \(coord\.namespace", source), source
    assert "self._acquired_locks" in inspect.getsource(tooz_redis.RedisDriver.__init__)
    assert 'b"leader_of_" + group_id' in inspect.getsource(tooz_redis.RedisDriver._encode_group_leader)


def test_sushy_tries_a_failed_connection_once_with_farms_settings():
    """sushy's connector retries a failed connection `server_side_retries or
    3` times, `server_side_retries_delay or 2` s apart (so 0 means 3 tries,
    4 s of sleep): farm passes 1 and 10 ms (farm/bmc/redfish.py). A server
    that accepts and hangs up must see one connection per poll."""
    import socket
    import threading

    from farm import errors
    from farm.bmc.redfish import RedfishBmc
    from farm.model import Node

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    port = listener.getsockname()[1]
    bmc = RedfishBmc(Node("n", f"http://127.0.0.1:{port}", 0, "u", "p", driver="redfish"), 2.0)
    try:
        try:
            bmc.power_state()
            raise AssertionError("a server that hangs up cannot be polled")
        except errors.BmcUnreachable:
            pass
        assert len(accepted) == 1
    finally:
        listener.close()


def test_sushy_connector_keeps_a_requests_session():
    """farm/bmc/redfish.py guards every request's origin with a transport
    adapter mounted on the requests session sushy's Connector keeps in
    `_session` (sushy has no public hook for it)."""
    import requests
    from sushy import connector

    conn = connector.Connector("https://127.0.0.1:1", verify=False)
    assert isinstance(conn._session, requests.Session)
    assert "self._session.request(" in inspect.getsource(connector.Connector._op)


def test_sushy_session_auth_keeps_its_session_in_these_attributes():
    """farm/bmc/redfish.py's _SharedAuth starts from a session kept in
    Redis by setting what SessionAuth._do_authenticate sets after a login
    (sushy has no public setter), and relies on refresh_session logging in
    anew on a 401 when both key and URI are set."""
    from sushy import auth

    source = inspect.getsource(auth.SessionAuth._do_authenticate)
    for attribute in ("self._session_key", "self._session_resource_id",
                      "self._session_auth_previously_successful"):
        assert attribute in source
    a = auth.SessionOrBasicAuth("u", "p")
    a._session_key, a._session_resource_id = "t", "/redfish/v1/SessionService/Sessions/1"
    assert a.can_refresh_session() and a.get_session_key() == "t"
    assert "self._do_authenticate()" in inspect.getsource(auth.SessionAuth.refresh_session)


def test_farm_api_connections_get_tcp_nodelay_from_asyncio():
    """asyncio sets TCP_NODELAY on an accepted connection only if the
    listening socket says IPPROTO_TCP; farm-api's does (farm.api.server.
    listen). Without it each answer on a kept connection waited for the
    client's delayed ACK: 44 ms a request, measured with wrk."""
    import asyncio
    import socket

    from farm.api.server import listen

    async def accepted_nodelay():
        got = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                sock = transport.get_extra_info("socket")
                got.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listen("127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(got, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) != 0


def test_uvicorns_httptools_protocol_has_what_the_header_deadline_wraps():
    """farm/api/slowloris.py overrides these methods and uses these
    attributes of uvicorn's HttpToolsProtocol (uvicorn pinned below 1)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    for method in ("connection_made", "on_message_begin", "on_headers_complete",
                   "connection_lost"):
        assert callable(getattr(HttpToolsProtocol, method)), method
    init = inspect.getsource(HttpToolsProtocol.__init__)
    assert "self.loop =" in init
    assert "self.transport = transport" in inspect.getsource(HttpToolsProtocol.connection_made)
    assert "self.on_message_begin" not in init  # httptools calls it, not uvicorn itself
    import uvicorn.config
    assert "self.http_protocol_class = self.http" in inspect.getsource(uvicorn.config.Config.load)


def test_requests_response_takes_a_body_read_elsewhere():
    """farm/bmc/redfish.py reads each Redfish answer itself (a deadline for
    the whole answer, a byte cap) and hands requests the body through
    Response._content and _content_consumed, as requests' own adapters do."""
    import requests
    source = inspect.getsource(requests.models.Response.content.fget)
    assert "self._content" in source and "self._content_consumed" in source
    response = requests.models.Response()
    response._content, response._content_consumed = b'{"a": 1}', True
    response.status_code, response.encoding = 200, "utf-8"
    assert response.json() == {"a": 1}
    import urllib3
    assert callable(urllib3.response.HTTPResponse.read1)
    assert "decode_content" in inspect.signature(urllib3.response.HTTPResponse.read1).parameters


def test_asyncio_sizes_each_tls_read_buffer_from_sslprotocols_max_size():
    """farm.bmc.redfish_http.small_tls_buffers sets this private class
    attribute: each TLS connection's read buffer is allocated from it
    (256 KiB in CPython 3.11 to 3.13, resident, per kept connection)."""
    import asyncio
    import asyncio.sslproto
    import ssl

    from farm.bmc.redfish_http import TLS_READ_BUFFER, small_tls_buffers

    small_tls_buffers()
    loop = asyncio.new_event_loop()
    try:
        proto = asyncio.sslproto.SSLProtocol(loop, asyncio.Protocol(), ssl.create_default_context(),
                                             None, server_side=False, server_hostname="bmc")
        assert len(proto._ssl_buffer) == TLS_READ_BUFFER
        assert len(proto.get_buffer(-1)) == TLS_READ_BUFFER  # what a read may fill
    finally:
        loop.close()
