"""Count the UDP and TCP packets a network namespace receives, by source
address, from the kernel's own copy of each packet (an AF_PACKET socket;
root). Run inside a namespace: `python sniff.py OUT`; OUT (JSON: {source:
packets}) is written once the socket is open, then again every 0.1 s
while packets arrive. Independent of farm
and of the simulated BMCs: what the BMC network saw, not what either says."""

import json
import os
import socket
import sys

ETH_P_IP = 0x0800


def main(out):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    s.settimeout(0.1)
    counts, written = {}, None
    while True:
        try:
            data, (_, _, kind, *_) = s.recvfrom(65535)
            # incoming only (not what this namespace sends), and UDP or TCP
            if kind != socket.PACKET_OUTGOING and len(data) >= 20 and data[9] in (6, 17):
                src = socket.inet_ntoa(data[12:16])
                counts[src] = counts.get(src, 0) + 1
        except TimeoutError:
            pass
        if counts != written:
            tmp = out + ".tmp"
            with open(tmp, "w") as f:
                json.dump(counts, f)
            os.replace(tmp, out)
            written = dict(counts)


if __name__ == "__main__":
    main(sys.argv[1])
