"""Plain pyghmi in a thread pool, no farm code: one contender of bench.compare.

    python -m bench.stock_pyghmi HOSTS_FILE ROUNDS THREADS TIMEOUT

HOSTS_FILE has one `address port username` per line (password from
BENCH_PASSWORD). Keeps one Command per BMC (bytes credentials, as pyghmi
needs), polls every BMC ROUNDS times, and prints one JSON line: polls ok,
failed, this process's CPU seconds spent polling, and, per round, when the
last healthy BMC answered. Gives up on a round after TIMEOUT * 4 seconds.
"""

import json
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait

from pyghmi.ipmi import command


def main():
    hosts_file, rounds, threads, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    password = os.environ["BENCH_PASSWORD"].encode()
    with open(hosts_file) as f:
        hosts = [line.split() for line in f if line.strip()]
    commands = {}

    def poll(host):
        address, port, user = host
        try:
            key = (address, port)
            if key not in commands:
                commands[key] = command.Command(bmc=address, port=int(port), userid=user.encode(),
                                                password=password)
            commands[key].get_power()
            return True, time.monotonic()
        except Exception:
            commands.pop((address, port), None)
            return False, time.monotonic()

    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    ok = failed = stuck = 0
    all_done = []
    cpu0 = cpu()
    pool = ThreadPoolExecutor(threads)
    for _ in range(rounds):
        start = time.monotonic()
        futures = [pool.submit(poll, h) for h in hosts]
        done, not_done = wait(futures, timeout=timeout * 4 + 10)
        results = [f.result() for f in done]
        ok += sum(1 for r, _ in results if r)
        failed += sum(1 for r, _ in results if not r)
        stuck += len(not_done)
        all_done.append(max((t for r, t in results if r), default=start) - start)
        if not_done:
            break
    print(json.dumps({"ok": ok, "failed": failed, "stuck": stuck, "cpu_s": cpu() - cpu0,
                      "round_healthy_done_s": all_done}), flush=True)
    os._exit(0)  # stuck threads never return


if __name__ == "__main__":
    main()
