"""A trust change committed while an upstream attempt is under way decides what follows.

An operator trusts the upstream's CA (or lifts a reject pin) while the relay is in the
middle of an attempt that the old state would reject. A request that arrives after
the change is committed must be decided under the new state: it must not be answered
with the stale "certificate rejected", and no backoff from that stale rejection may
hold it up.

The ordering is set by the test, not by timing: a TCP gate in front of kamailio holds
the relay's handshake until the test lets it through, and a trust policy (the
production one) holds the recording of a rejection, which happens after the verdict
and before the relay learns of it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

import pytest

from certstore.decision import decide
from certstore.model import PinDecision
from certstore.sqlite import SqliteStore
from gateway.relay.service import SipRelay
from gateway.tls import TlsConnector
from gateway.tls.policy import TrustCheck
from gateway.tls.trust import StoreTrustPolicy
from tests.e2e.conftest import Pki, header, register, relay_section, serving_relay
from tests.integration.trust_env import ADMIN, Env
from tests.pki import Issued
from tests.sip_peers import KamailioRegistrar

pytestmark = pytest.mark.slow
WAIT = 30.0


class HeldGate:
    """A TCP forwarder on 127.0.0.1 to ``backend_port`` that holds every connection
    until ``release`` is set: the client's ClientHello waits here, undecided."""

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.port = 0
        self.accepted = asyncio.Event()
        self.release = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> HeldGate:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # cancelled at exit if still held
        self._writers.append(writer)
        self.accepted.set()
        await self.release.wait()
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        self._writers.append(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(_pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        sink.close()


class HeldRecording(StoreTrustPolicy):
    """The production policy; recording a handshake (in the connector's worker thread)
    waits until the test sets ``release``."""

    def __init__(self, store: SqliteStore) -> None:
        super().__init__(store, decide=decide)
        self.recording = threading.Event()
        self.release = threading.Event()

    def record(self, check: TrustCheck, now: datetime) -> None:
        self.recording.set()
        if not self.release.wait(WAIT):
            raise TimeoutError("the test never released the recording")
        super().record(check, now)


class ChangingRecording(HeldRecording):
    """Held like ``HeldRecording``; then every recording also commits a change that
    leaves the verdict as it was (a setting toggled): the state changes during every
    attempt."""

    def __init__(self, store: SqliteStore) -> None:
        super().__init__(store)
        self.toggles = 0

    def record(self, check: TrustCheck, now: datetime) -> None:
        self.toggles += 1
        self.store.update_settings({"close_flows_on_revoke": self.toggles % 2 == 0}, actor=ADMIN)
        super().record(check, now)


@dataclass(frozen=True)
class Change:
    """A trust state that rejects ``identity``, and the change that makes it trusted."""

    identity: Callable[[Pki], Issued]
    before: Callable[[Env, Pki], None]
    change: Callable[[Env, Pki], None]


def _untrusted_ca(env: Env, pki: Pki) -> None:
    pass  # the store starts with no trusted CA of its own


def _trust_ca(env: Env, pki: Pki) -> None:
    env.trust(pki.other_root)


def _reject_pin(env: Env, pki: Pki) -> None:
    env.trust(pki.root)
    env.pin(pki.leaf, PinDecision.REJECT)


def _lift_pin(env: Env, pki: Pki) -> None:
    (pin,) = env.store.list_pins()
    env.store.remove_pin(pin.id, actor=ADMIN)


CHANGES = {
    "ca-trusted": Change(identity=lambda p: p.other_leaf, before=_untrusted_ca, change=_trust_ca),
    "reject-pin-lifted": Change(identity=lambda p: p.leaf, before=_reject_pin, change=_lift_pin),
}


@pytest.fixture(params=[HeldRecording])
def held_env(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Env, HeldRecording]]:
    """A real store and connector whose policy holds the recording of a rejection."""
    store = SqliteStore(tmp_path / "store.db")
    policy: HeldRecording = request.param(store)
    try:
        yield Env(store, policy, TlsConnector(policy)), policy
    finally:
        policy.release.set()
        store.close()


@asynccontextmanager
async def relay_via(env: Env, port: int, *, reconnect_min: float = 0.05) -> AsyncIterator[SipRelay]:
    async with serving_relay(
        env, relay_section(f"127.0.0.1:{port}"), reconnect_min=reconnect_min
    ) as relay:
        yield relay


@asynccontextmanager
async def first_rejection_held(
    held_env: tuple[Env, HeldRecording], pki: Pki, *, reconnect_min: float = 0.05
) -> AsyncIterator[SipRelay]:
    """A relay to kamailio presenting the unknown CA's leaf, once its first attempt has
    been rejected and the rejection is being recorded (held)."""
    env, policy = held_env
    with KamailioRegistrar(pki.other_leaf) as kamailio:
        async with relay_via(env, kamailio.port, reconnect_min=reconnect_min) as relay:
            assert await asyncio.to_thread(policy.recording.wait, WAIT)
            yield relay


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait until ``condition`` holds, looking every 10 ms, for at most WAIT seconds."""
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what} did not happen within {WAIT:g} s")


async def queued_register(relay: SipRelay) -> asyncio.Task[str]:
    """A REGISTER sent, once the relay holds it waiting for the upstream flow; the
    task's result is its final answer."""
    answer = asyncio.create_task(register(relay, 1))
    await _until(lambda: relay.core.pending > 0, "a request waiting for the upstream flow")
    return answer


def assert_relayed_challenge(response: str) -> None:
    """kamailio's digest challenge came through (sipsgate never answers 401 itself):
    the flow was opened, the request not refused as rejected."""
    assert response.startswith("SIP/2.0 401 "), response
    assert "digest" in header(response, "WWW-Authenticate").lower()


@pytest.mark.parametrize("case", CHANGES)
async def test_request_after_a_change_during_the_handshake_is_decided_under_the_new_state(
    held_env: tuple[Env, HeldRecording], pki: Pki, case: str
) -> None:
    """The change is committed while the first attempt's handshake is held (its
    certificate not yet decided); a REGISTER then waits for that attempt. The verdict
    follows the state at the decision, not the state when the attempt began."""
    env, policy = held_env
    policy.release.set()  # only the handshake is held here
    change = CHANGES[case]
    change.before(env, pki)
    with KamailioRegistrar(change.identity(pki)) as kamailio:
        async with HeldGate(kamailio.port) as gate, relay_via(env, gate.port) as relay:
            async with asyncio.timeout(WAIT):
                await gate.accepted.wait()  # the relay's first attempt, at start
            change.change(env, pki)
            answer = await queued_register(relay)
            gate.release.set()
            assert_relayed_challenge(await answer)
            assert relay.connects == 1
            assert relay.metrics.connect_failures.value(kind="rejected") == 0
    assert env.rejected() == ()  # nothing was rejected under the stale state


async def test_request_after_a_change_while_a_rejection_is_recorded_gets_a_new_attempt(
    held_env: tuple[Env, HeldRecording], pki: Pki
) -> None:
    """The first attempt is rejected under the old state; the CA is trusted before the
    relay has acted on that verdict, and a REGISTER arrives. It must not get the stale
    503: the relay tries again at once, under the new state."""
    env, policy = held_env
    async with first_rejection_held(held_env, pki) as relay:
        env.trust(pki.other_root)
        answer = await queued_register(relay)
        policy.release.set()
        assert_relayed_challenge(await answer)
        assert relay.connects == 1
        # The stale attempt counts as a failed one; no backoff came of it.
        assert relay.metrics.connect_failures.value(kind="rejected") == 1
    (entry,) = env.rejected()  # the rejection itself stays on record
    assert entry.chain[0].fingerprint == pki.other_leaf.fingerprint


async def test_no_backoff_outlives_a_change_committed_while_a_rejection_is_recorded(
    held_env: tuple[Env, HeldRecording], pki: Pki
) -> None:
    """No request waits this time: the relay's own attempt is rejected under the old
    state and the CA is trusted before the relay acts on it. With a long backoff, the
    next REGISTER must still be decided under the new state, not answered from the
    remembered failure."""
    env, policy = held_env
    async with first_rejection_held(held_env, pki, reconnect_min=60.0) as relay:
        env.trust(pki.other_root)
        policy.release.set()
        await _until(
            lambda: relay.metrics.connect_failures.value(kind="rejected") > 0,
            "the relay taking in the rejection",
        )
        assert_relayed_challenge(await register(relay, 1))
        assert relay.connects == 1


@pytest.mark.parametrize("held_env", [ChangingRecording], indirect=True)
async def test_a_state_that_changes_during_every_attempt_still_gets_an_answer(
    held_env: tuple[Env, HeldRecording], pki: Pki
) -> None:
    """Each rejection is stale by the time the relay sees it. The relay tries again at
    once a bounded number of times, then answers with the rejection it has: it never
    dials the upstream without pause."""
    _, policy = held_env
    async with first_rejection_held(held_env, pki, reconnect_min=60.0) as relay:
        answer = await queued_register(relay)
        policy.release.set()
        response = await answer
        assert response.startswith("SIP/2.0 503 "), response
        assert 'text="Upstream certificate rejected"' in header(response, "Reason")
        # Three stale rejections retried at once, the fourth applied.
        assert relay.metrics.connect_failures.value(kind="rejected") == 4
        assert relay.connects == 0
