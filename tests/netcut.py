"""A TCP proxy a test can cut as a network partition does: `blackhole()`
stops forwarding in both directions and closes nothing (connections stay
open, new ones are accepted and held, bytes wait in the kernel's buffers);
`heal()` forwards again, what waited included. One thread, bounded waits."""

import select
import socket
import threading

from farm.sim.ports import free_tcp_port


class NetCut:
    def __init__(self, upstream_host, upstream_port):
        self.upstream = (upstream_host, upstream_port)
        self.port = free_tcp_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._pairs = {}      # socket -> its peer
        self._held = []       # clients accepted during a cut, not yet connected upstream
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="netcut", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def blackhole(self):
        self._cut.set()

    def heal(self):
        self._cut.clear()

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        for sock in [self._listener, *self._pairs, *self._held]:
            sock.close()

    def _connect(self, client):
        try:
            upstream = socket.create_connection(self.upstream, timeout=3)
        except OSError:
            client.close()
            return
        self._pairs[client], self._pairs[upstream] = upstream, client

    def _drop(self, sock):
        peer = self._pairs.pop(sock, None)
        sock.close()
        if peer is not None:
            self._pairs.pop(peer, None)
            peer.close()

    def _run(self):
        while not self._stop.is_set():
            cut = self._cut.is_set()
            if not cut:
                while self._held:
                    self._connect(self._held.pop())
            watched = [self._listener] + ([] if cut else list(self._pairs))
            readable, _, _ = select.select(watched, [], [], 0.05)
            for sock in readable:
                if sock is self._listener:
                    client, _ = self._listener.accept()
                    if cut:
                        self._held.append(client)
                    else:
                        self._connect(client)
                    continue
                if sock not in self._pairs:
                    continue  # dropped along with its peer this round
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(sock)
                    continue
                try:
                    self._pairs[sock].sendall(data)
                except OSError:
                    self._drop(sock)
