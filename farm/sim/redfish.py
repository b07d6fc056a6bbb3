"""`farm-sim --protocol redfish`: many Redfish BMCs in one process, each on
its own loopback port, over HTTP or HTTPS (one generated self-signed
certificate), all served by one asyncio event loop (farm.sim.redfish_server).

Each serves what farm and sushy use: the service root, SessionService
(sessions by POST, X-Auth-Token, DELETE), basic auth, the Systems collection
and one ComputerSystem with PowerState and ComputerSystem.Reset, its Chassis
with Thermal (Temperatures, Fans) and Power (Voltages, PowerSupplies) or the
current shape (farm.sim.redfish_shapes: Sensors, the subsystems,
EnvironmentMetrics; --redfish-shape, --redfish-expand) or both, and its
LogServices/SEL with Entries and LogService.ClearLog. --max-sessions bounds
each BMC's session table as iDRAC's is (a login past it: 503, RAC0218). Power, sensors and
the log are farm.sim.hardware's, the very model the IPMI engines serve
(power changes take --power-delay; readings are the sensors' quantized
values, with their thresholds). Hung BMCs accept
connections and never answer; --delay slows every answer. SIGUSR1, or
--session-timeout of idleness, makes BMCs forget their sessions (the client
gets 401 and must log in again). Counts of logins and requests are printed at
exit, so tests can tell a kept session from a login per poll.
"""

import base64
import datetime
import hmac
import ipaddress
import json
import logging
import os
import socket
import ssl
import time
import uuid

from farm.bmc import sel as sel_codec
from farm.model import Node
from farm.sim import redfish_shapes
from farm.sim.fleet import pick
from farm.sim.hardware import SENSORS, Hardware, quantize
from farm.sim.ports import open_files
from farm.sim.redfish_server import Server

LOGGER = logging.getLogger(__name__)
ROOT = "/redfish/v1"
SYSTEM_ID = "1"
SYSTEM, CHASSIS = f"{ROOT}/Systems/{SYSTEM_ID}", f"{ROOT}/Chassis/1"
LOG = f"{SYSTEM}/LogServices/SEL"
# IPMI sensor type -> the Thermal/Power array and the value's field
ARRAYS = {0x01: ("Temperatures", "ReadingCelsius"), 0x04: ("Fans", "Reading"),
          0x02: ("Voltages", "ReadingVolts"), 0x08: ("PowerSupplies", None)}
LIMITS = ("LowerThresholdFatal", "LowerThresholdCritical", "LowerThresholdNonCritical",
          "UpperThresholdNonCritical", "UpperThresholdCritical", "UpperThresholdFatal")
RESETS = {"On": 1, "ForceOn": 1, "ForceOff": 0, "GracefulShutdown": 5, "ForceRestart": 3,
          "GracefulRestart": 3, "PowerCycle": 2}
# A full session table, answered as Dell documents iDRAC's (503, message
# RAC0218 "The maximum number of user sessions is reached.", in Redfish's
# extended-error form) with the Base registry's SessionLimitExceeded beside it
SESSION_LIMIT = {"error": {
    "code": "Base.1.12.GeneralError",
    "message": "A general error has occurred. See ExtendedInfo for more information.",
    "@Message.ExtendedInfo": [
        {"MessageId": "IDRAC.2.8.RAC0218",
         "Message": "The maximum number of user sessions is reached.",
         "Resolution": "Close one or more sessions and retry the operation.",
         "Severity": "Critical", "MessageArgs": [], "RelatedProperties": []},
        {"MessageId": "Base.1.12.SessionLimitExceeded",
         "Message": "The session establishment failed due to the number of simultaneous "
                    "sessions exceeding the limit of the implementation.",
         "Resolution": "Reduce the number of other sessions before trying to establish the "
                       "session or increase the limit of simultaneous sessions (if supported).",
         "Severity": "Critical", "MessageArgs": [], "RelatedProperties": []}]}}


def self_signed(directory, address, port):
    """A certificate for `address` signed by itself, and its key (PEM paths)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "farm-sim redfish")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path = os.path.join(directory, f"sim-cert-{port}.pem")
    key_path = os.path.join(directory, f"sim-key-{port}.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


class RedfishBmc:
    def __init__(self, fleet, name, hardware):
        self.fleet, self.name, self.hw = fleet, name, hardware
        self.sessions = {}  # token -> [session id, last used (monotonic)]
        self.counts = {"logins": 0, "refused": 0, "unauthorized": 0, "peak": 0}

    def authorized(self, headers):
        token = headers.get("x-auth-token")
        if token and token in self.sessions:
            self.sessions[token][1] = time.monotonic()
            return True
        if token:
            self.counts["unauthorized"] += 1  # a token this BMC does not hold (any more)
        auth = headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            self.fleet.basic_requests += 1
            return self.fleet.check(user, password)
        return False

    def answer(self, method, path, headers, body):
        """(status, JSON body or None, extra headers)."""
        self.fleet.requests += 1
        path, _, query = path.partition("?")
        path = path.rstrip("/") or "/"
        sessions = f"{ROOT}/SessionService/Sessions"
        system = f"{ROOT}/Systems/{SYSTEM_ID}"
        if method == "GET" and path == ROOT:  # the service root needs no login
            return 200, {"@odata.id": f"{ROOT}/", "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
                         "Id": "RootService", "Name": "farm-sim Redfish", "RedfishVersion": "1.6.0",
                         "UUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, self.name)),
                         "Systems": {"@odata.id": f"{ROOT}/Systems"},
                         "Chassis": {"@odata.id": f"{ROOT}/Chassis"},
                         "SessionService": {"@odata.id": f"{ROOT}/SessionService"},
                         "Links": {"Sessions": {"@odata.id": sessions}},
                         **({"ProtocolFeaturesSupported": {
                             "ExpandQuery": redfish_shapes.EXPAND_FEATURE}}
                            if self.fleet.expand != "off" else {})}, {}
        if method == "POST" and path == sessions:
            try:
                creds = json.loads(body or b"{}")
                ok = self.fleet.check(creds.get("UserName", ""), creds.get("Password", ""))
            except (ValueError, AttributeError):
                return 400, {"error": {"message": "malformed body"}}, {}
            if not ok:
                return 401, {"error": {"message": "invalid credentials"}}, {}
            if self.fleet.max_sessions and len(self.sessions) >= self.fleet.max_sessions:
                self.counts["refused"] += 1
                return 503, SESSION_LIMIT, {}
            token, sid = uuid.uuid4().hex, uuid.uuid4().hex[:12]
            self.sessions[token] = [sid, time.monotonic()]
            self.fleet.logins += 1
            self.counts["logins"] += 1
            self.counts["peak"] = max(self.counts["peak"], len(self.sessions))
            return 201, {"@odata.id": f"{sessions}/{sid}", "Id": sid, "UserName": creds["UserName"]}, {
                "X-Auth-Token": token, "Location": f"{sessions}/{sid}"}
        if not self.authorized(headers):
            return 401, {"error": {"message": "authentication required"}}, {}
        if method == "DELETE" and path.startswith(sessions + "/"):
            sid = path.rsplit("/", 1)[1]
            self.sessions = {t: s for t, s in self.sessions.items() if s[0] != sid}
            return 204, None, {}
        if method == "GET" and path == f"{ROOT}/SessionService":
            return 200, {"@odata.id": f"{ROOT}/SessionService", "Id": "SessionService",
                         "Name": "Session Service", "Sessions": {"@odata.id": sessions}}, {}
        if method == "GET" and path == f"{ROOT}/Systems":
            return 200, {"@odata.id": f"{ROOT}/Systems", "Name": "Computer System Collection",
                         "Members": [{"@odata.id": system}], "Members@odata.count": 1}, {}
        if method == "GET" and path == system:
            return 200, {"@odata.id": system, "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
                         "Id": SYSTEM_ID, "Name": self.name,
                         "PowerState": "On" if self.hw.power_state() else "Off",
                         "Links": {"Chassis": [{"@odata.id": CHASSIS}]},
                         "LogServices": {"@odata.id": f"{system}/LogServices"},
                         "Actions": {"#ComputerSystem.Reset": {
                             "target": f"{system}/Actions/ComputerSystem.Reset",
                             "ResetType@Redfish.AllowableValues": sorted(RESETS)}}}, {}
        if method == "POST" and path == f"{system}/Actions/ComputerSystem.Reset":
            try:
                kind = json.loads(body or b"{}").get("ResetType")
            except (ValueError, AttributeError):
                kind = None
            if kind not in RESETS:
                return 400, {"error": {"message": f"unsupported ResetType {kind!r}"}}, {}
            self.hw.control(RESETS[kind])
            return 204, None, {}
        doc = self.resource(method, path)
        if doc is None and method == "GET" and self.fleet.shape != "deprecated":
            doc = redfish_shapes.resource(self.hw, CHASSIS, path, query, self.fleet.expand)
            doc = doc and (*doc, {})
        if doc is not None:
            return doc
        return 404, {"error": {"message": f"no {method} {path}"}}, {}

    def resource(self, method, path):
        """The Chassis, its Thermal and Power, and the SEL LogService."""
        if method == "POST" and path == f"{LOG}/Actions/LogService.ClearLog":
            self.hw.clear_sel()
            return 204, None, {}
        if method != "GET":
            return None
        if path == f"{ROOT}/Chassis":
            return 200, {"@odata.id": path, "Name": "Chassis Collection",
                         "Members": [{"@odata.id": CHASSIS}], "Members@odata.count": 1}, {}
        shape = getattr(self.fleet, "shape", "deprecated")  # None: a unit test's BMC
        if path == CHASSIS:
            doc = {"@odata.id": path, "@odata.type": "#Chassis.v1_10_0.Chassis", "Id": "1",
                   "Name": "Chassis", "ChassisType": "RackMount",
                   "Links": {"ComputerSystems": [{"@odata.id": SYSTEM}]}}
            if shape != "current":
                doc.update({"Thermal": {"@odata.id": f"{path}/Thermal"},
                            "Power": {"@odata.id": f"{path}/Power"}})
            if shape != "deprecated":
                doc.update(redfish_shapes.chassis_links(path))
            return 200, doc, {}
        if path in (f"{CHASSIS}/Thermal", f"{CHASSIS}/Power") and shape != "current":
            return 200, self.sensors(path), {}
        if path == f"{SYSTEM}/LogServices":
            return 200, {"@odata.id": path, "Name": "Log Service Collection",
                         "Members": [{"@odata.id": LOG}], "Members@odata.count": 1}, {}
        if path == LOG:
            return 200, {"@odata.id": path, "@odata.type": "#LogService.v1_1_0.LogService",
                         "Id": "SEL", "Name": "System Event Log", "MaxNumberOfRecords": 512,
                         "Entries": {"@odata.id": f"{path}/Entries"},
                         "Actions": {"#LogService.ClearLog": {
                             "target": f"{path}/Actions/LogService.ClearLog"}}}, {}
        if path == f"{LOG}/Entries":
            members = [log_entry(rid, record) for rid, record in self.hw.sel_records()]
            return 200, {"@odata.id": path, "Name": "Log Entry Collection", "Members": members,
                         "Members@odata.count": len(members)}, {}
        return None

    def sensors(self, path):
        """Thermal or Power: the hardware's sensors of that resource."""
        thermal = path.endswith("/Thermal")
        doc = {"@odata.id": path, "Id": "Thermal" if thermal else "Power",
               "Name": "Thermal" if thermal else "Power"}
        for spec in SENSORS:
            array, field = ARRAYS[spec.type]
            if (array in ("Temperatures", "Fans")) != thermal:
                continue
            members = doc.setdefault(array, [])
            member = {"@odata.id": f"{path}#/{array}/{len(members)}", "MemberId": str(len(members)),
                      "Name": spec.name, "Status": {"State": "Enabled", "Health": "OK"}}
            if field is not None:
                member[field] = self.hw.sensor_value(spec)
                if array == "Fans":
                    member["ReadingUnits"] = "RPM"
                for name, limit in zip(LIMITS, spec.thresholds, strict=True):
                    if limit is not None:
                        member[name] = quantize(spec, limit)
            members.append(member)
        if not thermal:  # the chassis's consumption: what IPMI BMCs answer over DCMI
            doc["PowerControl"] = [{"@odata.id": f"{path}#/PowerControl/0", "MemberId": "0",
                                    "Name": "System Power Control",
                                    "PowerConsumedWatts": round(self.hw.watts())}]
        return doc


def log_entry(rid, record):
    """A Redfish LogEntry for one of the hardware's SEL records."""
    e = sel_codec.decode(record)
    created = datetime.datetime.fromtimestamp(e["at"] or 0, datetime.timezone.utc)
    return {"@odata.id": f"{LOG}/Entries/{rid}", "@odata.type": "#LogEntry.v1_4_0.LogEntry",
            "Id": str(rid), "Name": "Log Entry", "EntryType": "SEL",
            "Created": created.isoformat().replace("+00:00", "Z"),
            "Message": e.get("description", ""), "SensorType": e.get("sensor_type"),
            "SensorNumber": e.get("sensor"),
            "Severity": "OK" if e.get("direction") == "deasserted" else "Warning"}


class RedfishFleet:
    """`count` Redfish BMCs on address:base_port.. (some hung)."""

    def __init__(self, count, address, base_port, username, password, hung_fraction=0.0,
                 off_fraction=0.0, delay=0.0, session_timeout=1800.0, name_prefix="bmc-",
                 tls_dir=None, hardware=None, shape="deprecated", expand="off", max_sessions=0):
        self.address, self.base_port = address, base_port
        self.username, self.password = username, password
        self.delay, self.session_timeout = delay, session_timeout
        self.shape, self.expand, self.max_sessions = shape, expand, max_sessions
        self.drop_requested = False
        self.logins = self.requests = self.basic_requests = self.connections = 0
        self.tls = self_signed(tls_dir, address, base_port) if tls_dir else None
        scheme = "https" if self.tls else "http"
        host = f"[{address}]" if ":" in address else address
        options = dict(hardware or {})
        hot = pick(count, options.pop("hot_fraction", 0.0), 2)
        hung, off = pick(count, hung_fraction, 0), pick(count, off_fraction, 1)
        self.bmcs, self.hung, self.nodes = {}, {}, []
        self.ports, self.socks = {}, {}
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        # a listening socket and a kept connection per BMC, and some slack
        if open_files(2 * count + 64) < 2 * count + 64:
            LOGGER.warning("%d BMCs may need %d open files; this process may open %d",
                           count, 2 * count + 64, open_files(0))
        for i in range(count):
            name, port = f"{name_prefix}{base_port + i}", base_port + i
            if i in hung:
                self.hung[name] = port
            else:
                self.bmcs[name] = RedfishBmc(self, name, Hardware(name, powered=i not in off,
                                                                  hot=i in hot, **options))
            self.ports[port] = name
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))  # now: a port in use fails at start, before "ready"
            sock.listen(128)
            self.socks[port] = sock
            self.nodes.append(Node(name=name, address=f"{scheme}://{host}:{port}", port=0,
                                   username=username, password=password, driver="redfish",
                                   verify_tls=self.tls[0] if self.tls else ""))

    def check(self, user, password):
        return (hmac.compare_digest(user.encode(), self.username.encode())
                and hmac.compare_digest(password.encode(), self.password.encode()))

    def drop_sessions(self, older_than):
        now = time.monotonic()
        for bmc in self.bmcs.values():
            bmc.sessions = {t: s for t, s in bmc.sessions.items() if now - s[1] < older_than}

    def serve(self, stop):
        """Answer on every BMC's socket until `stop` (a threading.Event)."""
        context = None
        if self.tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
        Server(self, context).run(stop)

    def stats(self):
        return {"logins": self.logins, "requests": self.requests, "connections": self.connections,
                "basic_auth_requests": self.basic_requests,
                "bmcs": {name: b.counts for name, b in self.bmcs.items()},
                "power_changes": sum(b.hw.power_changes for b in self.bmcs.values())}

    def close(self):
        for sock in self.socks.values():
            sock.close()
