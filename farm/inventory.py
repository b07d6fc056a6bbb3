"""Parse and validate inventory files (YAML or CSV) into Nodes; pure, no I/O
besides reading the text handed in.

A file with any bad entry is rejected whole, and every problem names the entry
(CSV line or YAML index) and the field, never a password value.
"""

import csv
import io
import ipaddress
import re

import yaml

from farm.errors import InventoryError
from farm.model import Node

NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
FIELDS = ("name", "address", "port", "username", "password")
DEFAULT_PORT = 623


def is_valid_address(address):
    """An IP address (v4 or v6) or an RFC 1123 host name."""
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        pass
    if not address or len(address) > 253:
        return False
    labels = address.rstrip(".").split(".")
    if all(label.isdigit() for label in labels):
        return False  # looks like a malformed dotted quad, not a name
    return all(_LABEL_RE.match(label) for label in labels)


def _validate(where, raw, problems):
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping of fields, got {type(raw).__name__}")
        return None
    unknown = sorted(set(map(str, raw)) - set(FIELDS))
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(unknown)}")
    before = len(problems)
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        problems.append(f"{where}: field 'name' must be 1-128 characters of "
                        f"[A-Za-z0-9._-], got {name!r}")
    address = raw.get("address")
    if not isinstance(address, str) or not is_valid_address(address.strip()):
        problems.append(f"{where}: field 'address' must be an IP address or host "
                        f"name, got {address!r}")
    port = raw.get("port")
    if port is None or port == "":
        port = DEFAULT_PORT
    try:
        if isinstance(port, bool) or (isinstance(port, float) and not port.is_integer()):
            raise ValueError
        port = int(str(port).strip()) if isinstance(port, str) else int(port)
        if not 1 <= port <= 65535:
            raise ValueError
    except (TypeError, ValueError):
        problems.append(f"{where}: field 'port' must be an integer 1..65535, got {port!r}")
    for field in ("username", "password"):
        value = raw.get(field)
        if not isinstance(value, str) or not value:
            shown = "<missing>" if value in (None, "") else f"a {type(value).__name__}"
            # The password's value is never echoed, even when it is wrong.
            problems.append(f"{where}: field '{field}' must be a non-empty string, got {shown}")
    if len(problems) > before:
        return None
    return Node(name=name, address=address.strip(), port=port,
                username=raw["username"], password=raw["password"])


def _check_unique(entries, problems):
    seen = {}
    for where, node in entries:
        if node.name in seen:
            problems.append(f"{where}: field 'name' duplicates {seen[node.name]} ({node.name!r})")
        else:
            seen[node.name] = where


def parse_yaml(text):
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        raise InventoryError([f"{line}not valid YAML ({getattr(exc, 'problem', exc)})"]) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list):
        raise InventoryError(["the YAML document must be a mapping with a 'nodes:' list"])
    problems, entries = [], []
    for index, raw in enumerate(doc["nodes"]):
        node = _validate(f"nodes[{index}]", raw, problems)
        if node:
            entries.append((f"nodes[{index}]", node))
    _check_unique(entries, problems)
    if problems:
        raise InventoryError(problems)
    return [node for _, node in entries]


def parse_csv(text):
    try:
        return _parse_csv(text)
    except csv.Error as exc:
        raise InventoryError([f"not valid CSV: {exc}"]) from None


def _parse_csv(text):
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [f for f in FIELDS if f != "port" and f not in header]
    if missing:
        raise InventoryError([f"line 1: CSV header lacks column(s) {', '.join(missing)}"])
    reader.fieldnames = header
    problems, entries = [], []
    for row in reader:
        where = f"line {reader.line_num}"
        if None in row:
            problems.append(f"{where}: more values than columns")
            continue
        raw = {k: (v.strip() if isinstance(v, str) and k != "password" else v)
               for k, v in row.items()}
        node = _validate(where, raw, problems)
        if node:
            entries.append((where, node))
    _check_unique(entries, problems)
    if problems:
        raise InventoryError(problems)
    return [node for _, node in entries]


def parse(text, filename):
    """Parse by file extension (.csv, else YAML)."""
    if filename.lower().endswith(".csv"):
        return parse_csv(text)
    return parse_yaml(text)


def dump_yaml(nodes):
    """The inventory format `farm nodes import` reads."""
    return yaml.safe_dump({"nodes": [
        {"name": n.name, "address": n.address, "port": n.port,
         "username": n.username, "password": n.password} for n in nodes]},
        sort_keys=False)
