"""farm's data in Redis: inventory, per-node state, control, coordination
and the event stream, behind one class, `Store`, made of one part per concern
(connection.py: the client and the error choke point; inventory.py,
state.py, control.py, coordination.py). The scripts are files in lua/,
loaded once, every key through KEYS.

This package is the only place that imports redis; every redis error leaves
it as BackendUnavailable (or BackendRefused) with a message that never
contains the URL's password, its cause kept.

Keys, all under the namespace `ns`:
  {ns}:inventory          hash  node name -> JSON {address, port, username, [driver,
                                system_id, verify_tls for redfish nodes], and one of
                                password_sealed (Fernet, see farm.credentials), password_file
                                (a path on the worker hosts) or password (test farms only)}
  {ns}:inventory:version  int   bumped by every change of the inventory
  {ns}:state:{name}       hash  power_state, polled_at, latency, last_ok_at (the
                                worker's clock), seen_at (Redis's clock when written),
                                reachable, consecutive_failures, error_kind, last_error,
                                worker (member id of the worker that polled)
                                the other tasks add sensors_* and sel_* fields (polled_at,
                                seen_at, error_kind, error; sel_cursor, sel_sizes), power_watts
                                and bmc_device (docs/tasks.md)
  {ns}:sensors:{name}     hash  sensor key -> JSON reading (farm.tasks.sensors)
  {ns}:sel:{name}         list  the newest SEL entries (JSON), newest first
  {ns}:control            hash  node name -> JSON {desired, maintenance (a reason), and who/when}
  {ns}:control:version    int   bumped by every change of control
  {ns}:commands:{id}      list  power and SEL commands for worker {id} (JSON, with expiry)
  {ns}:reply:{cmd}        list  the outcome of command {cmd}, for the CLI waiting on it
  {ns}:counts             hash  power:<state> and failing:<error kind> -> how many nodes (their
                                last power result), kept by the scripts that write and remove
  {ns}:polled             zset  node name -> seen_at of its last power result
  {ns}:names              zset  every node's name (score 0), for pages in name order
  {ns}:layout             int   LAYOUT once counts, polled, names and the site sets were
                                built (recount.lua, Inventory._index_sites)
  {ns}:events             stream of changes: power, recovered, failing, sensor, sel,
                                sel-cleared, action, desired, maintenance (docs/tasks.md)
  {ns}:partitions         int   the partition count, fixed at the first coordinator's start
  {ns}:leader             string the leader's member id, with a TTL (the lease)
  {ns}:leader:epoch       int   bumped each time a new leader takes the lease
  {ns}:worker:{id}        hash  a worker's own report (host, pid, executor, pool_size,
                                nodes, last_heartbeat), expiring when it stops reporting
  {ns}:workers            zset  member id -> Redis time of its last report (ids silent
                                for a day leave it): which reports `farm status` reads
  {ns}:assignment         hash  generation, epoch, leader, members (JSON list), sites
                                (JSON list), placement (the default site's: JSON list,
                                member index per partition), placement:<site> for each
                                other site ([]: placed on nobody), published_at;
                                PUBLISHed on channel {ns}:assignment
  {ns}:label:<k>=<v>      set   names with label k=v, and every node in site=<its site>;
                                {ns}:label-values:<k> the values k has had
  {ns}:redfish-sessions  hash  node name -> its BMC's Redfish session token and URI, sealed
                                (sessions.py)
  {ns}:action*, {ns}:steps*, {ns}:step-of, {ns}:corrections: bulk power actions and
                                the spacing of farm's corrections (actions.py)
"""

from farm.store.actions import ACTION_TTL, ActionConflict, Actions
from farm.store.connection import EVENTS_MAXLEN, Connection
from farm.store.control import REPLY_TTL, Control
from farm.store.coordination import Coordination
from farm.store.inventory import LAYOUT, Inventory
from farm.store.sessions import Sessions
from farm.store.state import MAX_ERROR, State

__all__ = ["ACTION_TTL", "ActionConflict", "EVENTS_MAXLEN", "LAYOUT", "MAX_ERROR", "REPLY_TTL", "Store"]


class Store(Inventory, State, Control, Coordination, Actions, Sessions, Connection):
    """Everything farm keeps in Redis under one namespace (see the key table
    above); one client, one connection pool, safe to share across threads."""
