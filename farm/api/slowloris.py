"""uvicorn's HTTP protocol (httptools) with a deadline on request headers.

uvicorn times out idle kept-alive connections but gives a client any time
to send a request's headers: 500 connections that sent half a request were
all still open after 90 s, and under `ulimit -n 1024` 1,100 of them made
every other client's request fail. Here a connection has [api]
header_timeout seconds, from when it connects or begins a request, to
complete its headers, and is closed otherwise.

This subclasses uvicorn's protocol class (uvicorn.Config takes a protocol
class as `http`): the methods it wraps are shape-tested in
tests/unit/test_library_internals.py, and setup.py pins uvicorn's range."""

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def with_header_timeout(seconds):
    """An HttpToolsProtocol class whose connections close when a request's
    headers take longer than `seconds`."""

    class HeaderDeadline(HttpToolsProtocol):
        _header_timer = None

        def _arm(self):
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._headers_late)

        def _disarm(self):
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self):
            self._header_timer = None
            self.transport.close()

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self):
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self):
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadline
