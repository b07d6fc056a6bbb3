"""Who a farm process is and which tooz groups it meets others in (pure)."""

import os
import socket
import uuid


def member_id(kind):
    """Unique per process life: tooz liveness breaks if an id is reused."""
    return f"{kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def groups(namespace):
    """(the workers' group, the coordinators' group) of a namespace."""
    return f"{namespace}.workers", f"{namespace}.coordinators"
