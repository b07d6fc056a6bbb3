"""Which of a chassis's resources a sensors pass reads, chosen once per
connection (and again after a 404), cheapest first (docs/redfish.md):

1. "expand": the Sensors collection in one GET, `$expand=.($levels=1)`,
   where the service root's ProtocolFeaturesSupported.ExpandQuery allows
   it. A BMC that refuses the query (bmcweb unless built with
   insecure-enable-redfish-query; iDRAC without its licence) or ignores it
   (members come back as links) is remembered and not asked again.
2. "members": the Sensors collection without $expand. Every member is read
   once when the plan is made; a pass then reads ThermalMetrics' and
   EnvironmentMetrics' excerpts (fresh readings of the sensors they cover,
   one GET each) and, within `gets_per_pass` GETs in all, the other
   sensors in turn, the least recently read first. A sensor a pass did not
   read keeps the reading of the pass that last did.
3. "legacy": the deprecated Thermal and Power resources, two GETs, where
   the chassis serves no Sensors collection.

No I/O here: a pass is a generator (`steps`) that yields the paths it
wants and is sent their JSON objects (or has the error thrown in), so one
plan serves a blocking client (`read`, with `get(path)`) and an event loop
alike. `refused(exc)` says whether an error is the BMC declining a request
(an HTTP error other than 401/403/404), `gone(exc)` whether it is a 404.
"""

from farm import errors
from farm.bmc import redfish_data

EXPAND = "$expand=.($levels=1)"


def link(doc, *keys):
    for key in keys:
        doc = doc.get(key) if isinstance(doc, dict) else None
    if isinstance(doc, list):
        doc = doc[0] if doc else None
    path = doc.get("@odata.id") if isinstance(doc, dict) else None
    return path if isinstance(path, str) else None


def _members(doc, limit):
    members = doc.get("Members")
    if not isinstance(members, list):
        raise errors.BmcProtocolError("the Sensors collection has no Members list")
    return members[:limit]


def expanded(doc, limit):
    """The Sensor objects of an expanded collection, or None where the BMC
    sent links only (it ignored $expand)."""
    members = _members(doc, limit)
    if any(not isinstance(m, dict) or set(m) <= {"@odata.id"} for m in members):
        return None
    return members


class SensorReader:
    """The plan of one connection to one BMC, and its passes."""

    def __init__(self, get, refused, gone, gets_per_pass=4, max_members=512):
        self.get, self.refused, self.gone = get, refused, gone
        self.gets_per_pass, self.max_members = max(1, gets_per_pass), max_members
        self.expand_refused = False  # kept across connections: the BMC said no once
        self.plan = None
        self.gets = 0  # GETs so far (bench and tests: GETs per pass)

    def reset(self):
        """A new connection: choose again."""
        self.plan = None

    def read(self, system_path):
        """(readings, DCMI watts) of the system's first chassis, each GET
        through `get`."""
        return drive(self.steps(system_path), self.get)

    def steps(self, system_path):
        """A pass as a generator: yields paths, is sent their documents,
        returns (readings, DCMI watts)."""
        try:
            if self.plan is None:
                self.plan = yield from self._choose(system_path)
                return self._result(self.plan)  # the plan's own reads are this pass's
            return (yield from self._pass(self.plan))
        except Exception as exc:
            if self.gone(exc):  # a resource moved or went: choose again next pass
                self.plan = None
            raise

    def _get(self, path):
        self.gets += 1
        return (yield path)

    def _choose(self, system_path):
        chassis_path = link((yield from self._get(system_path)), "Links", "Chassis")
        if chassis_path is None:
            raise errors.BmcProtocolError("the system links no Chassis")
        chassis = yield from self._get(chassis_path)
        sensors = link(chassis, "Sensors")
        if sensors is None:
            paths = {"thermal": link(chassis, "Thermal"), "power": link(chassis, "Power")}
            if not any(paths.values()):
                raise errors.BmcProtocolError(
                    "the chassis serves neither a Sensors collection nor Thermal or Power")
            return {"kind": "legacy", "paths": paths, "docs": (yield from self._legacy(paths))}
        environment_path = link(chassis, "EnvironmentMetrics")
        environment = (yield from self._get(environment_path)) if environment_path else {}
        power = environment.get("PowerWatts")
        source = {"PowerWatts": {"DataSourceUri": power.get("DataSourceUri")}} \
            if isinstance(power, dict) and power.get("DataSourceUri") else None
        plan = {"sensors": sensors, "environment": source}
        if not self.expand_refused and (yield from self._expand_offered()):
            try:
                docs = expanded((yield from self._get(f"{sensors}?{EXPAND}")), self.max_members)
            except Exception as exc:
                if not self.refused(exc):
                    raise
                docs = None
            if docs is not None:
                return dict(plan, kind="expand", docs=docs, values={})
            self.expand_refused = True
        thermal = link(chassis, "ThermalSubsystem")
        metrics = link((yield from self._get(thermal)), "ThermalMetrics") if thermal else None
        excerpt_paths = [p for p in (metrics, environment_path) if p]
        collection = yield from self._get(sensors)
        members = [m.get("@odata.id") for m in _members(collection, self.max_members)
                   if isinstance(m, dict) and isinstance(m.get("@odata.id"), str)]
        docs = {}
        for path in members:
            docs[path] = yield from self._get(path)
        values = {}
        for path in excerpt_paths:
            values.update(redfish_data.excerpts(
                environment if path == environment_path else (yield from self._get(path))))
        covered = set(values)
        return dict(plan, kind="members", docs=docs, values=values, excerpts=excerpt_paths,
                    turn=[p for p in members if p not in covered])

    def _expand_offered(self):
        root = yield from self._get("/redfish/v1/")
        expand = (root.get("ProtocolFeaturesSupported") or {}).get("ExpandQuery")
        return isinstance(expand, dict) and bool(expand.get("Levels") or expand.get("NoLinks"))

    def _legacy(self, paths):
        docs = {}
        for key, path in paths.items():
            docs[key] = (yield from self._get(path)) if path else None
        return docs

    def _pass(self, plan):
        if plan["kind"] == "legacy":
            plan["docs"] = yield from self._legacy(plan["paths"])
        elif plan["kind"] == "expand":
            docs = expanded((yield from self._get(f"{plan['sensors']}?{EXPAND}")),
                            self.max_members)
            if docs is None:
                self.plan = None  # choose again next pass (no $expand, this time)
                self.expand_refused = True
                raise errors.BmcProtocolError("the BMC stopped expanding the Sensors collection")
            plan["docs"] = docs
        else:
            values = {}
            for path in plan["excerpts"]:
                values.update(redfish_data.excerpts((yield from self._get(path))))
            plan["values"] = values
            budget = self.gets_per_pass - len(plan["excerpts"])
            turn = plan["turn"]
            for _ in range(min(max(budget, 0), len(turn))):
                path = turn.pop(0)
                plan["docs"][path] = yield from self._get(path)
                turn.append(path)  # read last now: the others come first next pass
        return self._result(plan)

    @staticmethod
    def _result(plan):
        if plan["kind"] == "legacy":
            docs = plan["docs"]
            return redfish_data.readings(docs), redfish_data.power_watts(docs)
        docs = plan["docs"]
        sensors = list(docs.values()) if isinstance(docs, dict) else docs
        return (redfish_data.sensor_readings(sensors, plan["values"]),
                redfish_data.total_watts(sensors, plan["environment"], plan["values"]))


def drive(steps, get):
    """Run a pass's generator with a blocking `get(path)`: its documents
    sent in, its errors thrown in; the pass's return value."""
    try:
        path = next(steps)
        while True:
            try:
                doc = get(path)
            except Exception as exc:
                path = steps.throw(exc)
                continue
            path = steps.send(doc)
    except StopIteration as stop:
        return stop.value
