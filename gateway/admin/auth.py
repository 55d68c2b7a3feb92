"""Who may use the admin endpoint: the admin password, sessions, and login throttling.

- The password is kept as an argon2id hash in ``admin.json`` in the data directory
  (mode 0600, written atomically). On first start it comes from the environment
  variable ``SIPSGATE_ADMIN_PASSWORD``, else it is generated and handed back to the
  caller to print once; it is never logged.
- API clients use HTTP Basic (user ``admin``) over HTTPS. A successful check is
  remembered as an HMAC under a per-process random key, so a script making many calls
  does not pay argon2's deliberate cost on every request.
- The HTML pages use a login form and a session cookie. A session is created before
  login only to carry the login form's CSRF token; logging in replaces it with a new
  session id (no fixation). Every session has a synchronizer CSRF token. A session
  belongs to the password it was opened with: once the password changes (also by
  ``sipsgate admin set-password`` while the gateway runs) every older session ends.
- Failed logins (form or Basic) are throttled per client address: a few attempts are
  free, then each failure doubles a lockout window, answered with 429 and Retry-After.
  An attempt is admitted and counted *before* its password is checked, so concurrent
  attempts cannot all slip in under the limit while the first ones are being verified.
- argon2 is deliberately expensive (12 MiB and tens of milliseconds a check): at most
  one check runs at a time and only a few may wait, so a flood of logins costs the
  attacker their own time, not the admin's memory and CPU.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from certstore.files import SECRET_MODE, write_file
from gateway.errors import GatewayError

ADMIN_USER = "admin"
PASSWORD_ENV = "SIPSGATE_ADMIN_PASSWORD"  # noqa: S105 - a variable name, not a secret
CREDENTIALS_FILE = "admin.json"
CREDENTIALS_VERSION = 1
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
GENERATED_PASSWORD_BYTES = 18  # 24 URL-safe characters, 144 bits

SESSION_COOKIE = "__Host-sipsgate-session"
SESSION_IDLE_SECONDS = 30 * 60
SESSION_MAX_SECONDS = 12 * 3600
MAX_SESSIONS = 1000  # authenticated ones; the oldest are dropped beyond this
# Login-form sessions are not stored (a flood of GET /login cannot evict anyone's
# form); only the ids already used for a login are remembered, this many at most.
MAX_SPENT_ANONYMOUS = 10_000
_ANONYMOUS = "a."

THROTTLE_FREE_FAILURES = 5
THROTTLE_BASE_SECONDS = 2.0
THROTTLE_MAX_SECONDS = 15 * 60.0
THROTTLE_FORGET_SECONDS = 60 * 60.0
THROTTLE_MAX_CLIENTS = 10_000
THROTTLE_BUSY_SECONDS = 1.0  # the answer while this client's admitted attempts run

# argon2 checks: one at a time (each takes its memory cost), a few waiting, the rest refused.
VERIFY_CONCURRENCY = 1
VERIFY_MAX_WAITING = 8


class AdminAuthError(GatewayError):
    """The admin credentials file is missing, unreadable or malformed, or a new password
    is unacceptable."""


class VerifierBusy(GatewayError):
    """Too many password checks are already running or waiting; try again shortly."""

    code = "login-busy"

    def __init__(self, retry_after: float) -> None:
        super().__init__("Too many logins are being checked right now; try again in a few seconds.")
        self.retry_after = retry_after


# argon2id with costs from OWASP's list of equivalent choices (12 MiB, 3 passes, 1
# lane): a guess still costs an attacker real memory and time, and one check fits in
# the memory the gateway is bounded to. A hash made with other costs (older installs:
# 64 MiB) keeps verifying with its own; `sipsgate admin set-password` re-hashes.
ARGON2_MEMORY_KIB = 12 * 1024
ARGON2_TIME_COST = 3
ARGON2_PARALLELISM = 1


def _hasher() -> argon2.PasswordHasher:
    return argon2.PasswordHasher(
        time_cost=ARGON2_TIME_COST,
        memory_cost=ARGON2_MEMORY_KIB,
        parallelism=ARGON2_PARALLELISM,
    )


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AdminAuthError(
            f"The admin password must have at least {MIN_PASSWORD_LENGTH} characters; "
            f"the one given has {len(password)}."
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AdminAuthError(
            f"The admin password must have at most {MAX_PASSWORD_LENGTH} characters."
        )
    if any(ch in password for ch in "\r\n\x00"):
        raise AdminAuthError("The admin password must not contain line breaks or NUL.")


def generate_password() -> str:
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)


def credentials_path(data_dir: Path) -> Path:
    return data_dir / CREDENTIALS_FILE


def write_password(data_dir: Path, password: str, *, now: datetime | None = None) -> None:
    """Hash ``password`` and replace ``admin.json`` atomically (mode 0600)."""
    check_new_password(password)
    document = {
        "version": CREDENTIALS_VERSION,
        "username": ADMIN_USER,
        "password_hash": _hasher().hash(password),
        "changed_at": (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document) + "\n"
    write_file(credentials_path(data_dir), text.encode("utf-8"), mode=SECRET_MODE)


def ensure_password(data_dir: Path, env: Mapping[str, str]) -> str | None:
    """Create the admin credentials on first start.

    Returns the password when it was *generated* (the caller prints it once, to the
    console only); None when the credentials already existed or the password came
    from ``SIPSGATE_ADMIN_PASSWORD``.
    """
    if credentials_path(data_dir).exists():
        return None
    given = env.get(PASSWORD_ENV)
    if given:
        write_password(data_dir, given)
        return None
    password = generate_password()
    write_password(data_dir, password)
    return password


def read_password_hash(data_dir: Path) -> str:
    path = credentials_path(data_dir)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise AdminAuthError(
            f"The admin credentials file {path} does not exist; start sipsgate once or run "
            "`sipsgate admin set-password`."
        ) from exc
    except OSError as exc:
        raise AdminAuthError(f"The admin credentials file {path} cannot be read: {exc}.") from exc
    try:
        document = json.loads(raw)
        value = document["password_hash"]
        if document.get("version") != CREDENTIALS_VERSION or not isinstance(value, str):
            raise ValueError("unknown version or bad hash")
    except (ValueError, KeyError, TypeError) as exc:
        raise AdminAuthError(
            f"The admin credentials file {path} is damaged; set a new password with "
            "`sipsgate admin set-password`."
        ) from exc
    return value


class PasswordVerifier:
    """Checks the admin password against ``admin.json``; picks up a changed file."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._hash = ""
        self._cache_key = secrets.token_bytes(32)
        self._verified: set[bytes] = set()
        self._load()

    def _file_stamp(self) -> tuple[int, int, int]:
        st = credentials_path(self._data_dir).stat()
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self) -> None:
        try:
            stamp = self._file_stamp()
        except OSError:
            stamp = None
        if stamp is not None and stamp == self._stamp:
            return
        self._hash = read_password_hash(self._data_dir)
        self._stamp = stamp
        self._verified.clear()

    def generation(self) -> str:
        """A name of the current password (changes with every new password), for binding
        sessions to it; re-reads ``admin.json`` when the file changed."""
        with self._lock:
            self._load()
            return hashlib.sha256(self._hash.encode("utf-8")).hexdigest()[:32]

    def _tag(self, password: str) -> bytes:
        return hmac.new(self._cache_key, password.encode("utf-8"), hashlib.sha256).digest()

    def cached(self, password: str) -> bool:
        """True when ``password`` was verified before against the current file (cheap: an
        HMAC and a stat, no argon2)."""
        if len(password) > MAX_PASSWORD_LENGTH:
            return False
        with self._lock:
            self._load()
            tag = self._tag(password)
            return any(hmac.compare_digest(tag, known) for known in self._verified)

    def verify(self, password: str) -> bool:
        """True when ``password`` is the admin password. Slow on a miss (argon2): call it
        from a worker thread."""
        if len(password) > MAX_PASSWORD_LENGTH:
            return False
        if self.cached(password):
            return True
        with self._lock:
            tag = self._tag(password)
            current = self._hash
        try:
            _hasher().verify(current, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        with self._lock:
            if self._hash == current:
                self._verified = {tag}
        return True


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """``(user, password)`` from an ``Authorization: Basic`` header, else None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


def is_admin_user(user: str) -> bool:
    return hmac.compare_digest(user.encode("utf-8"), ADMIN_USER.encode("utf-8"))


# -- sessions ------------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Session:
    id: str = field(repr=False)
    csrf_token: str = field(repr=False)
    authenticated: bool
    created: float
    last_seen: float
    # The password generation an authenticated session was opened under.
    generation: str = ""
    # Messages shown once on the next page (after a form's redirect).
    messages: list[tuple[str, str]] = field(default_factory=list)

    def flash(self, level: str, text: str) -> None:
        self.messages.append((level, text))
        del self.messages[:-10]

    def take_messages(self) -> list[tuple[str, str]]:
        taken, self.messages = self.messages, []
        return taken

    def csrf_ok(self, token: str | None) -> bool:
        if not token:
            return False
        return hmac.compare_digest(token.encode("utf-8"), self.csrf_token.encode("utf-8"))


def _key(session_id: str) -> str:
    # Sessions are indexed by a hash of their id: the table holds no usable cookie values.
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


class SessionTable:
    """Server-side sessions in memory (a restart logs everyone out)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._key = secrets.token_bytes(32)  # signs login-form sessions (this process only)
        self._spent: OrderedDict[str, None] = OrderedDict()

    def _new(self, authenticated: bool) -> Session:
        now = self._clock()
        return Session(
            id=secrets.token_urlsafe(32),
            csrf_token=secrets.token_urlsafe(32),
            authenticated=authenticated,
            created=now,
            last_seen=now,
        )

    def _mac(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def anonymous(self) -> Session:
        """A session for the login form: it only carries the form's CSRF token.

        Nothing is stored: the id is signed (a nonce and its creation time) and the
        CSRF token derived from it, so any number of login forms can be open at once
        and none pushes another out.
        """
        now = self._clock()
        body = f"{secrets.token_urlsafe(16)}.{round(now * 1000)}"
        session_id = f"{_ANONYMOUS}{body}.{self._mac(body)}"
        return self._anonymous_session(session_id, created=now, now=now)

    def _anonymous_session(self, session_id: str, *, created: float, now: float) -> Session:
        return Session(
            id=session_id,
            csrf_token=self._mac("csrf:" + session_id),
            authenticated=False,
            created=created,
            last_seen=now,
        )

    def _get_anonymous(self, session_id: str, now: float) -> Session | None:
        body, _, mac = session_id[len(_ANONYMOUS) :].rpartition(".")
        _, _, millis = body.rpartition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return None
        try:
            created = int(millis) / 1000
        except ValueError:
            return None
        if not -1.0 <= now - created <= SESSION_IDLE_SECONDS:
            return None
        with self._lock:
            if session_id in self._spent:
                return None
        return self._anonymous_session(session_id, created=created, now=now)

    def get(self, session_id: str | None, *, generation: str | None = None) -> Session | None:
        """The live session with that id (authenticated or not), touching its idle timer.

        With ``generation``, an authenticated session opened under another password
        generation has ended (and is forgotten).
        """
        if not session_id or len(session_id) > 128:
            return None
        now = self._clock()
        if session_id.startswith(_ANONYMOUS):
            return self._get_anonymous(session_id, now)
        key = _key(session_id)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            expired = (
                now - session.last_seen > SESSION_IDLE_SECONDS
                or now - session.created > SESSION_MAX_SECONDS
                or (
                    generation is not None
                    and session.authenticated
                    and not hmac.compare_digest(session.generation, generation)
                )
            )
            if expired:
                del self._sessions[key]
                return None
            session.last_seen = now
            self._sessions.move_to_end(key)
            return session

    def login(self, previous_id: str | None, *, generation: str = "") -> Session:
        """A new authenticated session under password ``generation``; the previous one
        (if any) stops existing."""
        self.drop(previous_id)
        session = self._new(True)
        session.generation = generation
        with self._lock:
            self._sessions[_key(session.id)] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return session

    def drop(self, session_id: str | None) -> None:
        if not session_id:
            return
        with self._lock:
            if session_id.startswith(_ANONYMOUS):
                self._spent[session_id] = None  # a used login form cannot be used again
                while len(self._spent) > MAX_SPENT_ANONYMOUS:
                    self._spent.popitem(last=False)
                return
            self._sessions.pop(_key(session_id), None)

    def drop_all(self) -> None:
        """Log everyone out (after a password change)."""
        with self._lock:
            self._sessions.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)


# -- throttling ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0
    in_flight: int = 0  # admitted attempts whose password is still being checked


class LoginThrottle:
    """Per-client failed-login counter with an exponentially growing lockout."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        free_failures: int = THROTTLE_FREE_FAILURES,
        base_seconds: float = THROTTLE_BASE_SECONDS,
        max_seconds: float = THROTTLE_MAX_SECONDS,
    ) -> None:
        self._clock = clock
        self.free_failures = free_failures
        self.base_seconds = base_seconds
        self.max_seconds = max_seconds
        self._lock = threading.Lock()
        self._clients: OrderedDict[str, _Failures] = OrderedDict()

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None when it may try now."""
        now = self._clock()
        with self._lock:
            entry = self._clients.get(client)
            if entry is None:
                return None
            if now - entry.last > THROTTLE_FORGET_SECONDS:
                del self._clients[client]
                return None
            if entry.locked_until > now:
                return entry.locked_until - now
        return None

    def begin(self, client: str) -> float | None:
        """Admit one attempt from ``client``: None when it may go ahead (it then counts as
        in flight until :meth:`finish`), else the seconds to wait.

        Attempts in flight count as failures until they end, so while the free attempts
        are being checked no further ones are admitted, and after a lockout only one at
        a time is.
        """
        now = self._clock()
        with self._lock:
            entry = self._clients.get(client)
            if (
                entry is not None
                and not entry.in_flight
                and now - entry.last > THROTTLE_FORGET_SECONDS
            ):
                entry = None
            if entry is None:
                entry = _Failures(last=now)
                self._clients[client] = entry
                self._evict()
            if entry.locked_until > now:
                return entry.locked_until - now
            if entry.in_flight >= max(1, self.free_failures - entry.count):
                return THROTTLE_BUSY_SECONDS
            entry.in_flight += 1
            return None

    def cancel(self, client: str) -> None:
        """End an admitted attempt that was never checked (neither failure nor success)."""
        with self._lock:
            entry = self._clients.get(client)
            if entry is not None and entry.in_flight:
                entry.in_flight -= 1

    def finish(self, client: str, *, ok: bool) -> float | None:
        """End an attempt :meth:`begin` admitted; returns the lockout a failure started."""
        self.cancel(client)
        if ok:
            self.success(client)
            return None
        return self.failure(client)

    def _evict(self) -> None:
        while len(self._clients) > THROTTLE_MAX_CLIENTS:
            self._clients.popitem(last=False)

    def failure(self, client: str) -> float | None:
        """Count a failure; returns the lockout it started (seconds) if any."""
        now = self._clock()
        with self._lock:
            entry = self._clients.pop(client, None) or _Failures()
            if now - entry.last > THROTTLE_FORGET_SECONDS:
                entry = _Failures(in_flight=entry.in_flight)
            entry.count += 1
            entry.last = now
            lockout: float | None = None
            if entry.count >= self.free_failures:
                exponent = entry.count - self.free_failures
                lockout = min(self.base_seconds * (2**exponent), self.max_seconds)
                entry.locked_until = now + lockout
            self._clients[client] = entry
            self._evict()
        return lockout

    def success(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)


class AdminAuth:
    """Everything the admin endpoint needs to authenticate a request."""

    def __init__(
        self,
        data_dir: Path,
        *,
        clock: Callable[[], float],
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.verifier = PasswordVerifier(data_dir)
        self.sessions = SessionTable(clock)
        self.throttle = throttle or LoginThrottle(clock)
        self._verify_slots = asyncio.Semaphore(VERIFY_CONCURRENCY)
        self._verify_waiting = 0

    async def check_password(self, password: str) -> bool:
        """True when ``password`` is the admin password.

        A password verified before is recognised without argon2 (a script's HTTP Basic
        calls); any other check waits for one of the few argon2 slots, and when too many
        already wait it is refused with :class:`VerifierBusy` rather than queued.
        """
        if self.verifier.cached(password):
            return True
        if self._verify_waiting >= VERIFY_MAX_WAITING:
            raise VerifierBusy(THROTTLE_BUSY_SECONDS)
        self._verify_waiting += 1
        try:
            async with self._verify_slots:
                return await asyncio.to_thread(self.verifier.verify, password)
        finally:
            self._verify_waiting -= 1

    def session(self, session_id: str | None) -> Session | None:
        """The live session with that id, if it belongs to the current password."""
        return self.sessions.get(session_id, generation=self.verifier.generation())

    def login(self, previous_id: str | None) -> Session:
        """A new authenticated session bound to the current password."""
        return self.sessions.login(previous_id, generation=self.verifier.generation())

    def describe(self) -> dict[str, Any]:
        return {"user": ADMIN_USER, "sessions": len(self.sessions)}
