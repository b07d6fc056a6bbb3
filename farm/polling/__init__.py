"""The worker's engine room: when each node is due (`scheduling`, a wheel per
task ticked by futurist), where its poll runs (`executors`: the IPMI engine
in the worker or in spawned children; `redfish_pool`: Redfish jobs), and how
outcomes reach Redis (`results`: batched, pipelined, kept through an outage).

It may import farm's base (errors, model), `bmc`, `tasks` and `coordination`;
never `store` directly (results write through a callable the worker gives
it), the power rules, the fleet views, configuration or a daemon.
"""
