"""A second process writing to a store, for the multi-process and crash tests.

    python -m tests.integration._store_worker add-cert PATH CN
        add one certificate, print its fingerprint
    python -m tests.integration._store_worker writer PATH TAG COUNT
        print READY, wait for a line on stdin, then add COUNT certificates and COUNT
        pins one transaction each; print "cert FP" / "pin FP" after each commit
    python -m tests.integration._store_worker stream PATH TAG
        write forever, cycling through trust, pin, rejected and settings changes;
        print one line per change after its commit returned

Lines are flushed at once: a line printed means the change was committed.
"""

from __future__ import annotations

import hashlib
import sys
from datetime import timedelta

from certstore.model import Actor, Peer, PinDecision, PinMatch, Transport, TrustSource
from certstore.sqlite import SqliteStore
from certstore.store import PinRequest
from tests.integration._store_support import BASE_TIME, PKI, untrusted

WORKER = Actor(name="worker", interface="cli")


def fake_fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def say(*words: object) -> None:
    print(*words, flush=True)


def add_cert(path: str, cn: str) -> None:
    with SqliteStore(path) as store:
        cert = PKI.leaf(None, cn=cn).model
        store.add_trust([cert], source=TrustSource.UPLOADED, actor=WORKER)
        say(cert.fingerprint)


def writer(path: str, tag: str, count: int) -> None:
    with SqliteStore(path) as store:
        certs = [PKI.leaf(None, cn=f"{tag}-{n}.example").model for n in range(count)]
        say("READY")
        sys.stdin.readline()
        for n, cert in enumerate(certs):
            store.add_trust([cert], source=TrustSource.UPLOADED, actor=WORKER)
            say("cert", cert.fingerprint)
            fp = fake_fingerprint(f"{tag}-pin-{n}")
            store.add_pin(
                PinRequest(decision=PinDecision.ACCEPT, match=PinMatch.CERTIFICATE, fingerprint=fp),
                actor=WORKER,
            )
            say("pin", fp)


def stream(path: str, tag: str) -> None:
    with SqliteStore(path) as store:
        say("OPEN")
        n = 0
        while True:
            step = n % 4
            if step == 0:
                cert = PKI.leaf(None, cn=f"{tag}-{n}.example").model
                store.add_trust([cert], source=TrustSource.UPLOADED, actor=WORKER)
                say("cert", cert.fingerprint)
            elif step == 1:
                fp = fake_fingerprint(f"{tag}-pin-{n}")
                store.add_pin(
                    PinRequest(
                        decision=PinDecision.REJECT,
                        match=PinMatch.PUBLIC_KEY,
                        fingerprint=fp,
                        scope=f"{tag}.example:5061",
                        note=f"worker {tag} change {n}",
                    ),
                    actor=WORKER,
                )
                say("pin", fp)
            elif step == 2:
                leaf = PKI.leaf(None, cn=f"rejected-{tag}-{n}.example").model
                peer = Peer(host=f"{tag}.example", port=5061, transport=Transport.SIPS)
                store.record_handshake(untrusted(), (leaf,), peer, BASE_TIME + timedelta(seconds=n))
                say("rejected", leaf.fingerprint)
            else:
                store.update_settings({"http_auth_username": f"{tag}-{n}"}, actor=WORKER)
                say("setting", n)
            n += 1


def main(argv: list[str]) -> None:
    mode, path, *rest = argv
    if mode == "add-cert":
        add_cert(path, rest[0])
    elif mode == "writer":
        writer(path, rest[0], int(rest[1]))
    elif mode == "stream":
        stream(path, rest[0])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
