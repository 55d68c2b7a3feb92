"""Process limits ``sipsgate run`` sets for itself at start.

Every TCP connection (base stations, the admin endpoint, the upstream flow) is a file
descriptor. The usual soft limit of 1,024 is less than the connections sipsgate is
built to bound (``sip.max_connections``, the admin endpoint's clients), so the soft
limit is raised towards the hard one; the systemd unit sets both (``LimitNOFILE``).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

#: Descriptors sipsgate asks for: the LAN TCP cap, the admin's clients, and headroom.
OPEN_FILES_WANTED = 65536


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenFileLimit:
    before: int
    after: int
    hard: int


def raise_open_file_limit(wanted: int = OPEN_FILES_WANTED) -> OpenFileLimit:
    """Raise the soft RLIMIT_NOFILE to ``wanted`` (never above the hard limit, never
    lower than it was)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return OpenFileLimit(before=soft, after=target, hard=hard)
    return OpenFileLimit(before=soft, after=soft, hard=hard)
