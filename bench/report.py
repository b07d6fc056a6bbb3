"""Writes a benchmark's tables into docs/benchmarks.md, between the markers
`<!-- bench:NAME -->` and `<!-- /bench:NAME -->`, with the command, the
machine and the versions of the run. The prose around them is written by
hand and says what the figures mean."""

import datetime
import importlib.metadata
import os
import platform
import re
import subprocess
import sys

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "benchmarks.md")


def _first_line(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not found"


def environment():
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    with open("/proc/meminfo") as f:
        mem_gib = int(f.readline().split()[1]) / 2**20
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}"
                         for p in ("pyghmi", "futurist", "tooz", "redis", "prometheus-client"))
    return (f"{os.cpu_count()} cores ({model}), {mem_gib:.0f} GiB, Linux {platform.release()}, "
            f"Python {platform.python_version()}; {versions}; "
            f"{_first_line(['redis-server', '--version'])}; {_first_line(['ipmitool', '-V'])}; "
            f"{_first_line(['ipmipower', '--version'])}")


def section(name, tables, path=DOC, machine=None, bench=None):
    """Replace NAME's block in docs/benchmarks.md with `tables` (Markdown);
    `bench`: the benchmark's name where the block's differs."""
    command = "python -m bench " + " ".join([bench or name] + sys.argv[1:])
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = (f"<!-- bench:{name} -->\nWritten by `{command}` on {stamp}.\n"
            f"Machine: {machine or environment()}.\n\n{tables.strip()}\n<!-- /bench:{name} -->")
    with open(path) as f:
        doc = f.read()
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    if pattern.search(doc):
        doc = pattern.sub(lambda _: body, doc)
    else:
        doc = doc.rstrip() + f"\n\n{body}\n"
    with open(path, "w") as f:
        f.write(doc)
    print(f"wrote the {name} tables into {path}", file=sys.stderr)


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def publish(name, header, rows, work, write_docs):
    """Print a benchmark's table (and where its files are); with
    `write_docs`, write it into docs/benchmarks.md as NAME's block."""
    text = table(header, rows)
    print(text)
    print(f"work directory: {work}", file=sys.stderr)
    if write_docs:
        section(name, text)
