"""The fleet as operators see it: inventory files parsed and checked
(`inventory`, pure), selections such as `rack=r12,n[01-40]` (`selection`,
pure), the views the CLI and farm-api render from the Store (`views`), and
`probe`, which finds the IPMI settings one BMC needs by trying them.

`inventory` and `selection` import no I/O library. `views` reads the Store it
is handed; it may import `store`, `power` (plans) and `coordination`
(partitions), never click, FastAPI, configuration or a daemon.
"""
