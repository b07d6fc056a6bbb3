"""The rules a worker follows before it touches a node's power, all pure:
the power state farm keeps and the commands operators send (`control`), who
may act and until when (`lease`, the acting lease, clock injected), the waves
of a bulk action (`plan`), a worker's share of them (`steps`), and the actor
that carries one decision to the engine (`acting`).

Pure: it imports farm's base (errors, model), `coordination.placement` and
itself, and no I/O library (no redis, tooz, sushy, click, oslo.config or
socket); Redis and the BMC are handed in as objects by the worker.
"""
