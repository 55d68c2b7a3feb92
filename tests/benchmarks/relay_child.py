"""What the relay benchmarks that run sipsgate's relay in a child process of their own
share: its arguments, and the store and SIP section it relays with."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tests.sip_peers import DOMAIN

if TYPE_CHECKING:
    from gateway.config import SipSection
    from tests.integration.trust_env import Env


def child_arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    return parser


def relay_setup(args: argparse.Namespace, *, source_inflight: int) -> tuple[Env, SipSection]:
    """A store trusting ``--root`` and a SIP section relaying UDP from loopback to the
    upstream on ``--upstream-port``, logging warnings only. Per-source rate limits are
    out of the way: the SIPps share one address, and a benchmark measures the relay."""
    from certstore.model import TrustSource
    from certstore.x509 import parse_der
    from gateway.config import SipSection
    from gateway.log import configure_logging
    from tests.integration.trust_env import ADMIN, make_env

    configure_logging("warning", "json")
    env = make_env(Path(args.store))
    env.store.add_trust(
        [parse_der(Path(args.root).read_bytes())], source=TrustSource.UPLOADED, actor=ADMIN
    )
    sip = SipSection(
        listen_udp=("127.0.0.1:0",),
        listen_tcp=(),
        upstream=f"sips:{DOMAIN}",
        upstream_address=f"127.0.0.1:{args.upstream_port}",
        source_rate=1_000_000,
        source_burst=1_000_000,
        source_inflight=source_inflight,
    )
    return env, sip
