"""RFC 3261 §17 transaction state machines, driven with time passed in."""

from __future__ import annotations

import pytest

from gateway.relay.transaction import (
    ClientTransaction,
    ResponseAction,
    ServerTransaction,
    State,
    TimerAction,
    TimerSettings,
    TransactionTable,
)

T = TimerSettings()


class TestClientNonInvite:
    def test_udp_retransmits_with_timer_e_doubling_up_to_t2(self) -> None:
        """Timer E starts at T1, doubles, and is capped at T2."""
        tx = ClientTransaction("OPTIONS", reliable=False, now=0.0)
        fired = []
        now = 0.0
        while len(fired) < 6:
            assert tx.deadline is not None
            now = tx.deadline
            assert tx.on_timer(now) is TimerAction.RETRANSMIT
            fired.append(now)
        gaps = [round(b - a, 3) for a, b in zip([0.0, *fired], fired, strict=False)]
        assert gaps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]

    def test_tcp_never_retransmits_and_times_out_with_timer_f(self) -> None:
        """On a reliable transport only Timer F (64*T1) runs."""
        tx = ClientTransaction("REGISTER", reliable=True, now=10.0)
        assert tx.deadline == 10.0 + 64 * T.t1
        assert tx.on_timer(tx.deadline) is TimerAction.TIMEOUT
        assert tx.terminated

    def test_final_response_is_passed_once_then_absorbed(self) -> None:
        """A retransmitted final response is not passed on a second time."""
        tx = ClientTransaction("OPTIONS", reliable=False, now=0.0)
        assert tx.on_response(200, 0.1) is ResponseAction.PASS
        assert tx.state is State.COMPLETED
        assert tx.on_response(200, 0.2) is ResponseAction.ABSORB
        assert tx.deadline == pytest.approx(0.1 + T.t4)  # Timer K
        assert tx.on_timer(tx.deadline) is TimerAction.TERMINATED

    def test_provisional_moves_timer_e_to_t2(self) -> None:
        """In Proceeding, retransmissions go every T2."""
        tx = ClientTransaction("BYE", reliable=False, now=0.0)
        assert tx.on_response(100, 0.1) is ResponseAction.PASS
        assert tx.state is State.PROCEEDING
        assert tx.on_timer(0.5) is TimerAction.RETRANSMIT
        assert tx.deadline == pytest.approx(0.5 + T.t2)


class TestClientInvite:
    def test_non_2xx_final_is_acked_and_retransmissions_acked_again(self) -> None:
        """§17.1.1.3: ACK for the 486, the same ACK again for its retransmission."""
        tx = ClientTransaction("INVITE", reliable=False, now=0.0)
        assert tx.on_response(180, 0.1) is ResponseAction.PASS
        assert tx.on_response(486, 0.2) is ResponseAction.PASS_AND_ACK
        assert tx.on_response(486, 0.3) is ResponseAction.ACK_AGAIN
        assert tx.deadline == pytest.approx(0.2 + 32.0)  # Timer D

    def test_every_2xx_is_passed_in_accepted(self) -> None:
        """RFC 6026: 2xx retransmissions go on to the UAC; Timer M ends the state."""
        tx = ClientTransaction("INVITE", reliable=True, now=0.0)
        assert tx.on_response(200, 0.1) is ResponseAction.PASS
        assert tx.state is State.ACCEPTED
        assert tx.on_response(200, 0.2) is ResponseAction.PASS
        assert tx.on_timer(0.1 + 64 * T.t1) is TimerAction.TERMINATED

    def test_timer_a_doubles_without_cap_and_timer_b_times_out(self) -> None:
        """INVITE over UDP: A = T1, 2T1, 4T1, ...; B = 64*T1 gives a timeout."""
        tx = ClientTransaction("INVITE", reliable=False, now=0.0)
        times = []
        while True:
            assert tx.deadline is not None
            now = tx.deadline
            action = tx.on_timer(now)
            if action is TimerAction.TIMEOUT:
                break
            times.append(now)
        assert times[:4] == [0.5, 1.5, 3.5, 7.5]
        assert now == pytest.approx(64 * T.t1)

    def test_provisional_replaces_timer_b_with_timer_c(self) -> None:
        """After a 1xx the INVITE waits Timer C (§16.6), not Timer B."""
        tx = ClientTransaction("INVITE", reliable=True, now=0.0)
        tx.on_response(180, 1.0)
        assert tx.deadline == pytest.approx(1.0 + T.timer_c)


class TestServer:
    def test_non_invite_over_udp_repeats_the_final_response(self) -> None:
        """A retransmitted request gets the last response again until Timer J."""
        tx = ServerTransaction("REGISTER", reliable=False)
        assert tx.on_retransmission() is None
        assert tx.send_response(200, b"200", 0.0)
        assert tx.on_retransmission() == b"200"
        assert not tx.send_response(200, b"again", 0.1)
        assert tx.on_timer(64 * T.t1) is TimerAction.TERMINATED

    def test_non_invite_over_tcp_terminates_at_once(self) -> None:
        """Timer J is zero on a reliable transport."""
        tx = ServerTransaction("OPTIONS", reliable=True)
        tx.send_response(200, b"200", 5.0)
        assert tx.deadline == 5.0
        assert tx.on_timer(5.0) is TimerAction.TERMINATED

    def test_invite_non_2xx_is_retransmitted_until_ack(self) -> None:
        """Timer G retransmits the 486 over UDP; the ACK stops it (Confirmed, Timer I)."""
        tx = ServerTransaction("INVITE", reliable=False)
        tx.send_response(100, b"100", 0.0)
        assert tx.send_response(486, b"486", 1.0)
        assert tx.on_timer(1.5) is TimerAction.RETRANSMIT
        assert tx.on_ack(1.6)
        assert tx.state is State.CONFIRMED
        assert tx.deadline == pytest.approx(1.6 + T.t4)

    def test_invite_without_ack_reports_no_ack(self) -> None:
        """Failure twin: Timer H fires when the ACK never comes."""
        tx = ServerTransaction("INVITE", reliable=True)
        tx.send_response(503, b"503", 0.0)
        assert tx.on_timer(64 * T.t1) is TimerAction.NO_ACK

    def test_provisional_after_final_is_not_sent(self) -> None:
        """A late 180 after the final answer is dropped."""
        tx = ServerTransaction("INVITE", reliable=True)
        tx.send_response(486, b"486", 0.0)
        assert not tx.send_response(180, b"180", 0.1)


class TestTable:
    def test_one_timer_for_all_and_stale_entries_skipped(self) -> None:
        """get_timer is the earliest live deadline; re-armed transactions fire once."""
        table: TransactionTable[ClientTransaction] = TransactionTable()
        a = ClientTransaction("OPTIONS", reliable=False, now=0.0)
        b = ClientTransaction("OPTIONS", reliable=True, now=0.0)
        table.add("a", a)
        table.add("b", b)
        assert table.get_timer() == 0.5
        a.on_response(200, 0.1)  # Completed: Timer K replaces Timer E
        table.schedule("a", a)
        assert table.get_timer() == pytest.approx(0.1 + T.t4)
        due = table.due(0.1 + T.t4)
        assert [k for k, _ in due] == ["a"]
        assert table.due(0.1 + T.t4) == []

    def test_terminated_transactions_leave_the_table(self) -> None:
        table: TransactionTable[ClientTransaction] = TransactionTable()
        tx = ClientTransaction("OPTIONS", reliable=True, now=0.0)
        table.add("x", tx)
        tx.on_response(200, 1.0)
        table.schedule("x", tx)
        assert len(table) == 0
        assert table.get_timer() is None

    def test_retired_transaction_answers_until_its_time_then_goes(self) -> None:
        """A retired server transaction is a plain record: found by key, counted, and
        forgotten when its time is up, while live deadlines still come first."""
        table: TransactionTable[ServerTransaction] = TransactionTable()
        tx = ServerTransaction("OPTIONS", reliable=False)
        table.add("s", tx)
        tx.send_response(200, b"200", 1.0)
        record = (b"200", "192.168.1.20", 5060, 0)
        table.retire("s", tx, record, 1.0 + T.timeout)
        assert table.get("s") is None
        assert table.get_retired("s") == record
        assert "s" in table and len(table) == 1 and table.retired == 1 and table.live == 0
        live = ServerTransaction("INVITE", reliable=False)
        table.add("i", live)
        live.send_response(486, b"486", 2.0)  # Timer G at 2.5
        table.schedule("i", live)
        assert table.get_timer() == pytest.approx(2.5)
        table.due(2.5)
        assert table.get_retired("s") == record
        live.on_ack(2.6)
        table.discard("i", live)
        assert table.get_timer() == pytest.approx(1.0 + T.timeout)
        assert table.due(1.0 + T.timeout) == []
        assert table.get_retired("s") is None and "s" not in table and len(table) == 0
        assert table.get_timer() is None
