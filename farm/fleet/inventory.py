"""Parse and validate inventory files (YAML or CSV) into Nodes; pure, no I/O
besides reading the text handed in.

A file with any bad entry is rejected whole, and every problem names the entry
(CSV line or YAML index) and the field, never a password value. Hostile files
are refused in bounded time and memory: a size cap, libyaml's C loader (its
nesting limit), values never expanded into messages (a YAML alias bomb is
cheap until something formats it), no tags beyond YAML's safe ones.
"""

import csv
import io
import ipaddress
import re
import urllib.parse

import yaml

from farm.bmc.rmcp import SUITES, WORKAROUNDS
from farm.coordination.placement import DEFAULT_SITE
from farm.errors import InventoryError
from farm.model import Node

# a name never begins with '-': in a selection that means "all but"
NAME_RE = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,127}\Z")
LABEL_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}\Z")
# values: no ',', '@', '=', '~', '!', '[' or spaces, which selections use
LABEL_VALUE_RE = re.compile(r"^[A-Za-z0-9_.:/+-]{1,128}\Z")
MAX_LABELS = 32
_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
FIELDS = ("name", "address", "port", "username", "password", "password_file", "driver",
          "system_id", "verify_tls", "cipher_suites", "privilege", "kg", "workarounds", "labels", "site")
IPMI_ONLY = ("cipher_suites", "privilege", "kg", "workarounds")
PRIVILEGES = ("user", "operator", "administrator")
KG_MAX = 20  # bytes: K_g is a 20-byte key (IPMI 2.0 section 13.31), given in hex
_HEX_RE = re.compile(r"^(0x)?([0-9A-Fa-f]{2}){1,20}\Z")
DRIVERS = ("ipmi", "redfish")
REDFISH_MAX = 256  # bytes of a Redfish user name or password farm accepts
_SYSTEM_ID_RE = re.compile(r"^[A-Za-z0-9._~/-]{1,256}\Z")
DEFAULT_PORT = 623
MAX_BYTES = 16 * 2**20  # about 170,000 nodes in YAML (parsed in ~20 s); larger files: split them
IPMI_MAX = {"username": 16, "password": 20}  # bytes, IPMI 2.0 (section 22.29)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _show(value):
    """A value for an error message: short scalars as they are, anything
    else by its type (a list may be an alias bomb; never expand it)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return f"a {type(value).__name__}"


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


def _check_secrets(where, raw, problems, max_user, max_password, protocol):
    limits = {"username": max_user, "password": max_password}
    secret_fields = ("username", "password")
    password_file = raw.get("password_file")
    if password_file not in (None, ""):
        secret_fields = ("username",)
        if raw.get("password") not in (None, ""):
            problems.append(f"{where}: give 'password' or 'password_file', not both")
        elif not isinstance(password_file, str) or not password_file.startswith("/"):
            problems.append(f"{where}: field 'password_file' must be an absolute path on the "
                            f"worker hosts, got {_show(password_file)}")
    for field in secret_fields:
        value = raw.get(field)
        if isinstance(value, str) and any(ch in value for ch in "\0\r\n"):
            # never echoed; no BMC login form or ipmitool -P takes these
            problems.append(f"{where}: field '{field}' contains a NUL or a line break")
        elif not isinstance(value, str) or not value:
            shown = "<missing>" if value in (None, "") else f"a {type(value).__name__}"
            # The password's value is never echoed, even when it is wrong.
            problems.append(f"{where}: field '{field}' must be a non-empty string, got {shown}")
        elif len(value.encode("utf-8")) > limits[field]:
            problems.append(f"{where}: field '{field}' is {len(value.encode('utf-8'))} bytes; "
                            f"{protocol} allows at most {limits[field]}")


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
                        f"[A-Za-z0-9._-], not beginning with '-', got {_show(name)}")
    labels = _labels(where, raw.get("labels"), problems)
    site = _site(where, raw.get("site"), problems)
    driver = raw.get("driver") or "ipmi"
    if driver not in DRIVERS:
        problems.append(f"{where}: field 'driver' must be ipmi or redfish, got {_show(driver)}")
        return None
    if driver == "redfish":
        return _validate_redfish(where, raw, problems, before, labels, site)
    for field in ("system_id", "verify_tls"):
        if raw.get(field) not in (None, ""):
            problems.append(f"{where}: field '{field}' is for redfish nodes only")
    if raw.get("kg") not in (None, "") and raw.get("password_file") not in (None, ""):
        problems.append(f"{where}: field 'kg' cannot go with 'password_file' (it would be "
                        f"stored in Redis while the password is not)")
    address = raw.get("address")
    if not isinstance(address, str) or not is_valid_address(address.strip()):
        problems.append(f"{where}: field 'address' must be an IP address or host "
                        f"name, got {_show(address)}")
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
        problems.append(f"{where}: field 'port' must be an integer 1..65535, got {_show(port)}")
    _check_secrets(where, raw, problems, IPMI_MAX["username"], IPMI_MAX["password"], "IPMI 2.0")
    settings = _ipmi_settings(where, raw, problems)
    if len(problems) > before:
        return None
    return Node(name=name, address=address.strip(), port=port, username=raw["username"],
                password=raw.get("password") or "", password_file=raw.get("password_file") or "",
                labels=labels, site=site, **settings)


def _site(where, value, problems):
    """A node's site: a label value ("default" when absent)."""
    if value in (None, ""):
        return DEFAULT_SITE
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not LABEL_VALUE_RE.match(value.strip()):
        problems.append(f"{where}: field 'site' must be 1-128 of [A-Za-z0-9_.:/+-], got "
                        f"{_show(value)}")
        return DEFAULT_SITE
    return value.strip()


def _labels(where, value, problems):
    """((key, value), ...) sorted, from a YAML mapping or a CSV cell
    'rack=r12;pdu=r12-a'."""
    if value in (None, "", {}):
        return ()
    if isinstance(value, str):
        pairs = []
        for item in value.split(";"):
            key, sep, val = item.strip().partition("=")
            if not sep:
                problems.append(f"{where}: field 'labels' must be key=value;key=value, got "
                                f"{_show(value)}")
                return ()
            pairs.append((key.strip(), val.strip()))
    elif isinstance(value, dict):
        pairs = [(str(k), v if isinstance(v, str) else str(v) if isinstance(v, int) else v)
                 for k, v in value.items()]
    else:
        problems.append(f"{where}: field 'labels' must be a mapping, got {_show(value)}")
        return ()
    if len(pairs) > MAX_LABELS or len({k for k, _ in pairs}) != len(pairs):
        problems.append(f"{where}: field 'labels' must have at most {MAX_LABELS} distinct keys")
        return ()
    for key, val in pairs:
        if key == "site":
            problems.append(f"{where}: field 'labels': 'site' is a field of its own (the "
                            f"node's BMC network): give it as site, not as a label")
        elif not LABEL_KEY_RE.match(key):
            problems.append(f"{where}: field 'labels': key {_show(key)} must be a letter then "
                            f"up to 62 of [A-Za-z0-9_.-]")
        elif not isinstance(val, str) or not LABEL_VALUE_RE.match(val):
            problems.append(f"{where}: field 'labels': {key}'s value {_show(val)} must be 1-128 "
                            f"of [A-Za-z0-9_.:/+-]")
    return tuple(sorted(pairs))


def _scalar(value):
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _listed(value):
    """A YAML list, or a CSV cell 'a;b' (also 'a,b'), as a list of strings;
    None when it is neither. An item that is not a scalar is never turned
    into a string: str() of an alias bomb's list builds it (9 levels in 592
    bytes: 79 s and 3.6 GB)."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        if len(value) > 64 or not all(_scalar(v) for v in value):
            return None
        return [str(v).strip() for v in value]
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [v.strip() for v in re.split(r"[;,]", str(value)) if v.strip()]
    return None


def _ipmi_settings(where, raw, problems):
    """The per-node IPMI settings (each optional; the fleet's when absent)."""
    out = {}
    suites = _listed(raw.get("cipher_suites"))
    if suites is None or any(s not in {str(n) for n in SUITES} for s in suites) \
            or len(set(suites)) != len(suites):
        problems.append(f"{where}: field 'cipher_suites' must list distinct suites of "
                        f"{sorted(SUITES)}, got {_show(raw.get('cipher_suites'))}")
    elif suites:
        out["cipher_suites"] = tuple(int(s) for s in suites)
    privilege = raw.get("privilege")
    if privilege is not None and privilege != "":
        if isinstance(privilege, str):  # (a list or a mapping is not a key to look up)
            privilege = {"admin": "administrator"}.get(privilege, privilege)
        if privilege not in PRIVILEGES:
            problems.append(f"{where}: field 'privilege' must be one of {', '.join(PRIVILEGES)}, "
                            f"got {_show(raw.get('privilege'))}")
        else:
            out["privilege"] = privilege
    kg = raw.get("kg")
    if kg not in (None, ""):
        # never echoed: K_g is a secret like the password
        if not isinstance(kg, str) or not _HEX_RE.match(kg.strip()):
            problems.append(f"{where}: field 'kg' must be the BMC key in hex, at most "
                            f"{KG_MAX} bytes ({2 * KG_MAX} hex digits)")
        else:
            out["kg"] = kg.strip().lower().removeprefix("0x")
    workarounds = _listed(raw.get("workarounds"))
    if workarounds is None or any(w not in WORKAROUNDS for w in workarounds):
        problems.append(f"{where}: field 'workarounds' must list names of "
                        f"{', '.join(WORKAROUNDS)}, got {_show(raw.get('workarounds'))}")
    elif workarounds:
        out["workarounds"] = tuple(dict.fromkeys(workarounds))
    return out


def _validate_redfish(where, raw, problems, before, labels, site):
    address = raw.get("address")
    url = None
    if isinstance(address, str):
        try:
            url = urllib.parse.urlsplit(address.strip())
            url.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            url = None
    host = (url.hostname or "") if url else ""
    if (url is None or url.scheme not in ("http", "https") or url.username or url.password
            or url.path not in ("", "/") or url.query or url.fragment
            or not is_valid_address(host)):
        problems.append(f"{where}: field 'address' of a redfish node must be "
                        f"https://host[:port] or http://host[:port], got {_show(address)}")
    if raw.get("port") not in (None, ""):
        problems.append(f"{where}: field 'port' is for ipmi nodes; give a redfish port in the "
                        f"address URL")
    for field in IPMI_ONLY:
        if raw.get(field) not in (None, "", []):
            problems.append(f"{where}: field '{field}' is for ipmi nodes only")
    system_id = raw.get("system_id")
    if system_id not in (None, "") and (not isinstance(system_id, str)
                                        or not _SYSTEM_ID_RE.match(system_id)):
        problems.append(f"{where}: field 'system_id' must be a Redfish id or path, got "
                        f"{_show(system_id)}")
    verify = raw.get("verify_tls")
    if verify in (None, "", True, "true", "True", "yes"):
        verify = ""
    elif verify in (False, "false", "False", "no"):
        verify = "false"
    elif not isinstance(verify, str) or not verify.startswith("/"):
        problems.append(f"{where}: field 'verify_tls' must be true, false or the absolute path "
                        f"of a CA bundle, got {_show(verify)}")
    _check_secrets(where, raw, problems, REDFISH_MAX, REDFISH_MAX, "Redfish")
    if len(problems) > before:
        return None
    return Node(name=raw["name"], address=address.strip().rstrip("/"), port=0,
                username=raw["username"], password=raw.get("password") or "",
                password_file=raw.get("password_file") or "", driver="redfish",
                system_id=system_id or "", verify_tls=verify, labels=labels, site=site)


def _check_unique(entries, problems):
    """Names are unique regardless of case (they are host names to people),
    and so are BMCs: two entries for one address:port would open two
    sessions to one BMC."""
    names, bmcs = {}, {}
    for where, node in entries:
        key = node.name.casefold()
        if key in names:
            problems.append(f"{where}: field 'name' duplicates {names[key]} ({node.name!r}; "
                            f"names are compared regardless of case)")
        else:
            names[key] = where
        bmc = (node.address.casefold(), node.port, node.system_id)
        if bmc in bmcs:
            shown = node.address if node.driver == "redfish" else f"{node.address}:{node.port}"
            problems.append(f"{where}: BMC {shown} is already {bmcs[bmc]}")
        else:
            bmcs[bmc] = where


def parse_yaml(text):
    try:
        doc = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader (C or Python)
    except RecursionError:
        raise InventoryError(["not valid YAML (nested too deeply)"]) from None
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
    optional = ("port", "password", "password_file", "driver", "system_id", "verify_tls",
                "labels", "site", *IPMI_ONLY)
    missing = [f for f in FIELDS if f not in optional and f not in header]
    if "password" not in header and "password_file" not in header:
        missing.append("password (or password_file)")
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
    if len(text) > MAX_BYTES:
        raise InventoryError([f"the file is larger than {MAX_BYTES // 2**20} MiB; split it"])
    text = text.removeprefix("\ufeff")  # a UTF-8 byte order mark, as Excel writes
    if filename.lower().endswith(".csv"):
        return parse_csv(text)
    return parse_yaml(text)


def dump_yaml(nodes):
    """The inventory format `farm nodes import` reads."""
    return yaml.safe_dump({"nodes": [
        dict({"name": n.name, "address": n.address, "username": n.username},
             **({"port": n.port} if n.driver == "ipmi" else {}), **n.extra(),
             **({"kg": n.kg} if n.kg else {}),
             **({"password_file": n.password_file} if n.password_file else {"password": n.password}))
        for n in nodes]}, sort_keys=False)
