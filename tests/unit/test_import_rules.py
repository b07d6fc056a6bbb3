"""The tree's import rules, read from the source (ast), not hoped for:
daemons import no daemon, pure modules import no I/O library, a package
imports nothing of a higher rank, and each outside library has its one
adapter (docs/architecture.md, "Code map")."""

import ast
import pathlib

import pytest

import farm

ROOT = pathlib.Path(farm.__file__).parent

# Lowest first. A module's rank is that of its longest matching prefix; it
# may import from its own rank and below.
RANKS = {
    "farm.errors": 0, "farm.model": 0, "farm.logs": 0,
    "farm.coordination": 1, "farm.credentials": 1,
    "farm.bmc": 2, "farm.power": 2,
    "farm.store": 3, "farm.tasks": 3,
    "farm.fleet": 4, "farm.polling": 4,
    "farm.metrics_http": 5, "farm.metrics": 5,
    "farm.conf": 6, "farm.api": 6, "farm.cli": 6, "farm.sim": 6,
    "farm.daemon": 7,
    "farm.worker": 8, "farm.coordinator": 8, "farm.api.server": 8,
}
DAEMONS = {"farm.worker", "farm.coordinator", "farm.api.server"}

# Pure: decisions and parsing, handed their I/O as objects.
PURE = ("farm.power", "farm.fleet.selection", "farm.fleet.inventory",
        "farm.coordination.placement", "farm.coordination.backend", "farm.errors",
        "farm.model", "farm.api.ipmi", "farm.bmc.interpret", "farm.bmc.redfish_data",
        "farm.bmc.redfish_sensors", "farm.bmc.redfish_log",
        "farm.bmc.sdr", "farm.bmc.sel", "farm.bmc.codes", "farm.bmc.negotiation")
IO_LIBRARIES = {"redis", "tooz", "sushy", "click", "oslo_config", "socket", "socketserver",
                "ssl", "select", "selectors", "asyncio", "http", "urllib3", "requests",
                "aiohttp", "httpx", "fastapi", "uvicorn", "pyghmi", "futurist"}

# One adapter per outside library: who may import it.
ADAPTERS = {
    "redis": ("farm.store", "farm.sim.harness"),
    "tooz": ("farm.coordination.membership",),
    "sushy": ("farm.bmc.redfish",),
    "aiohttp": ("farm.bmc.redfish_aio",),
    "oslo_config": ("farm.conf",),
    "fastapi": ("farm.api.app",),
    "uvicorn": ("farm.api.server", "farm.api.slowloris"),
    "pyghmi": ("farm.sim",),
    "prometheus_client": ("farm.metrics", "farm.metrics_http"),
}


def module_name(path):
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path, name=None):
    """Every module named by an import anywhere in the file (functions too),
    relative imports resolved, `from farm import x` as `farm.x`."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            if base.startswith("farm"):
                found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def farm_modules():
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def under(name, prefix):
    return name == prefix or name.startswith(prefix + ".")


def rank(name):
    matches = [p for p in RANKS if under(name, p)]
    return RANKS[max(matches, key=len)] if matches else None


def existing(name, modules):
    """`farm.x.y` names a module, or an attribute of the module `farm.x`."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def violations(modules, imports):
    """The broken rules, as readable lines (empty when the tree obeys)."""
    found = []
    for name, deps in sorted(imports.items()):
        own = rank(name)
        for dep in sorted(deps):
            top = dep.split(".")[0]
            if top == "farm":
                target = existing(dep, modules)
                if not target or target == "farm" or under(target, name):
                    continue
                if target in DAEMONS and name != target:
                    found.append(f"{name} imports the daemon {target}")
                elif own is not None and (rank(target) or 0) > own:
                    found.append(f"{name} (rank {own}) imports {target} (rank {rank(target)})")
                continue
            if any(under(name, p) for p in PURE) and top in IO_LIBRARIES:
                found.append(f"{name} is pure but imports {dep}")
            owners = ADAPTERS.get(top)
            if owners and not any(under(name, o) for o in owners):
                found.append(f"{name} imports {top}, whose adapter is {', '.join(owners)}")
    return found


def test_every_module_has_a_rank():
    assert [m for m in farm_modules() if m != "farm" and rank(m) is None] == []


def test_the_tree_obeys_its_import_rules():
    modules = farm_modules()
    imports = {name: imports_of(path) for name, path in modules.items()}
    assert violations(modules, imports) == []


@pytest.mark.parametrize("module, extra, expected", [
    ("farm.worker", "from farm import coordinator", "imports the daemon farm.coordinator"),
    ("farm.api.server", "import farm.worker", "imports the daemon farm.worker"),
    ("farm.power.control", "import redis", "is pure but imports redis"),
    ("farm.fleet.selection", "from socket import gethostname", "is pure but imports socket"),
    ("farm.coordination.placement", "from tooz import hashring", "is pure but imports tooz"),
    ("farm.bmc.session", "from farm.fleet import views", "(rank 2) imports farm.fleet.views (rank 4)"),
    ("farm.store.state", "from farm import conf", "(rank 3) imports farm.conf (rank 6)"),
    ("farm.polling.results", "import redis", "whose adapter is farm.store"),
])
def test_a_forbidden_import_is_named(tmp_path, module, extra, expected):
    """Each rule fails on one forbidden import added to the real tree."""
    modules = farm_modules()
    imports = {name: imports_of(path) for name, path in modules.items()}
    assert violations(modules, imports) == []
    path = tmp_path / modules[module].name
    path.write_text(modules[module].read_text() + "\n" + extra + "\n")
    imports[module] = imports_of(path, name=module)
    found = violations(modules, imports)
    assert any(expected in line and line.startswith(module) for line in found), found
