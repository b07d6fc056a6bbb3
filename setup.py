from setuptools import find_packages, setup

setup(
    name="farm",
    version="0.1.0",
    description="Watch the power state of thousands of BMCs over IPMI, in parallel",
    license="Apache-2.0",
    packages=find_packages(include=["farm", "farm.*"]),
    package_data={"farm.store.lua": ["*.lua"]},
    python_requires=">=3.11",
    install_requires=[
        "prometheus-client>=0.17",
        "futurist>=3.0,<4",  # public API only (periodics.periodic, PeriodicWorker)
        "cryptography>=3.4",  # AES for farm's RMCP+ client; Fernet for credentials at rest
        "pyghmi==1.6.19",  # farm-sim only: its BMC server, patched in farm/sim/pyghmi_loop.py
        # private parts used, shape-tested in tests/unit/test_library_internals.py:
        # RedisDriver._acquired_locks and RedisLock's name, and
        # RedisDriver(member_id, parsed_url, options); the tests also compare
        # farm's own ring with HashRing._ring (placement stays the same)
        "tooz>=9.0,<10",
        "redis>=4.5",
        "oslo.config>=9.0",
        "click>=8.0",
        "PyYAML>=6.0",
        # Redfish; farm's connector settings work around `retries or 3` (farm/bmc/redfish.py)
        "sushy>=5.0,<6",
        # farm/bmc/redfish.py reads each answer itself (urllib3's read1) and
        # hands requests the body (Response._content): shape-tested
        "requests>=2.28,<3",
        "urllib3>=2.0,<3",
        # the asyncio Redfish engine's HTTP client ([redfish] engine = asyncio)
        "aiohttp>=3.9,<4",
        # farm-api: request validation and the OpenAPI document (docs/architecture.md)
        "fastapi>=0.110",
        # farm/api/slowloris.py subclasses uvicorn's httptools protocol (a header
        # deadline): its shape is tested in tests/unit/test_library_internals.py
        "uvicorn>=0.29,<1",
        # selections' `key=~regex`: RE2 matches in linear time (Python's re took
        # 2 s on a 27-character label for `(a+)+$`, doubling per character)
        "google-re2>=1.1",
        # farm-api's scrape path (/ipmi): uvicorn takes uvloop and httptools when
        # present, redis-py hiredis; together 0.56 ms of CPU a scrape instead of
        # 1.1 ms (docs/benchmarks.md, section 10)
        "uvloop>=0.19",
        "httptools>=0.6",
        "hiredis>=2.0",
    ],
    extras_require={"test": ["pytest>=7", "pytest-timeout>=2", "hypothesis>=6", "ruff",
                             "sushy-tools>=2.0",  # sushy-emulator: a Redfish service nobody here wrote
                             # DMTF's Redfish-Mockup-Server (vendored in tests/fixtures) needs
                             # grequests; DMTF's Tacklebox (rf_sensor_list.py) reads as an oracle
                             "grequests>=0.7", "redfish-utilities>=3.0"],
                    "bench": ["matplotlib>=3.5"]},
    entry_points={
        "console_scripts": [
            "farm = farm.cli:main",
            "farm-worker = farm.worker:main",
            "farm-coordinator = farm.coordinator:main",
            "farm-sim = farm.sim.cli:main",
            "farm-api = farm.api.server:main",
        ],
        "farm.tasks": [
            "power = farm.tasks.power:PowerPoll",
            "sensors = farm.tasks.sensors:SensorsPoll",
            "sel = farm.tasks.sel:SelPoll",
        ],
        "oslo.config.opts": [
            "farm = farm.conf:list_opts",
        ],
    },
)
