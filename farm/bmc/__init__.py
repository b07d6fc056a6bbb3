"""BMC protocols. A client offers `get_power_state(node)` returning a PowerState
or raising a farm.errors.BmcError subclass, and `close()`."""
