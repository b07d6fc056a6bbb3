"""Find free loopback ports for simulated fleets and private servers.

    python -m farm.sim.ports udp COUNT   # a base port with COUNT free UDP ports
    python -m farm.sim.ports tcp [COUNT] # one free TCP port, or a base port with COUNT
"""

import random
import resource
import socket
import sys


def free_tcp_port(address="127.0.0.1"):
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def open_files(wanted):
    """Raise this process's soft limit on open files towards `wanted`
    (never past the hard limit); what it is now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_udp_range(count, address="127.0.0.1", attempts=100, sock_type=socket.SOCK_DGRAM):
    """A base port such that base..base+count-1 are all free UDP (or, with
    sock_type=SOCK_STREAM, TCP) ports now."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    low, high = 10000, _ephemeral_low() - 1  # below the kernel's ephemeral ports,
    if high - low + 1 < count:               # which other sockets take at random
        low, high = 10000, 65535
    for _ in range(attempts):
        base = random.randint(low, high - count + 1)
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(family, sock_type)
                socks.append(sock)
                sock.bind((address, port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports on {address}")


def free_tcp_range(count, address="127.0.0.1"):
    return free_udp_range(count, address, sock_type=socket.SOCK_STREAM)


if __name__ == "__main__":
    kind = sys.argv[1] if len(sys.argv) > 1 else "tcp"
    if kind == "udp":
        print(free_udp_range(int(sys.argv[2])))
    else:
        print(free_tcp_range(int(sys.argv[2])) if len(sys.argv) > 2 else free_tcp_port())
