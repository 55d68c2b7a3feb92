"""The SQLite schema: ordered, versioned migrations.

Entry n of :data:`MIGRATIONS` brings a store from ``PRAGMA user_version`` n to n + 1;
each runs inside the open transaction (never ``executescript``, which commits on its
own). A released migration is never edited: a store file of every version is kept in
the test fixtures and must open and upgrade to the same schema. A change to the schema
is a new entry at the end, and :data:`SCHEMA_VERSION` grows by one.
"""

from __future__ import annotations

SCHEMA_VERSION = 4

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE meta (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            generation INTEGER NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE trust (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            fingerprint TEXT NOT NULL UNIQUE,
            der BLOB NOT NULL,
            spki_fingerprint TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('ca', 'server')),
            source TEXT NOT NULL,
            added_at TEXT NOT NULL
        )""",
        "CREATE INDEX trust_spki ON trust (spki_fingerprint)",
        """CREATE TABLE pins (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            decision TEXT NOT NULL CHECK (decision IN ('accept', 'reject')),
            match TEXT NOT NULL CHECK (match IN ('certificate', 'public-key')),
            fingerprint TEXT NOT NULL,
            scope TEXT,
            expires_at TEXT,
            note TEXT NOT NULL,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            certificate_der BLOB
        )""",
        "CREATE INDEX pins_fingerprint ON pins (fingerprint)",
        "CREATE INDEX pins_scope ON pins (scope, created_by)",
        """CREATE TABLE rejected (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            chain_key TEXT NOT NULL UNIQUE,
            chain BLOB NOT NULL,
            leaf_fingerprint TEXT NOT NULL,
            leaf_spki_fingerprint TEXT NOT NULL,
            reasons TEXT NOT NULL,
            peer_host TEXT NOT NULL,
            peer_port INTEGER NOT NULL,
            peer_transport TEXT NOT NULL,
            peer_sni TEXT,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            count INTEGER NOT NULL,
            overridden INTEGER NOT NULL,
            previous_der BLOB
        )""",
        "CREATE INDEX rejected_last_seen ON rejected (last_seen, id)",
        "CREATE INDEX rejected_leaf ON rejected (leaf_fingerprint)",
        "CREATE INDEX rejected_leaf_spki ON rejected (leaf_spki_fingerprint)",
        """CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        """CREATE TABLE device_identity (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            kind TEXT NOT NULL,
            chain BLOB NOT NULL,
            private_key_pem BLOB NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE pending_csr (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            csr_pem BLOB NOT NULL,
            private_key_pem BLOB NOT NULL,
            key_spec TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            interface TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            details TEXT NOT NULL
        )""",
    ),
    # 2: the address a rejected chain was dialled at, beside the identity checked.
    ("ALTER TABLE rejected ADD COLUMN address TEXT",),
    (
        # Version 3: revocation information, keyed by where it came from.
        """CREATE TABLE revocation (
            key TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            source TEXT NOT NULL,
            url TEXT,
            der BLOB NOT NULL,
            fingerprint TEXT NOT NULL,
            fetched_at TEXT NOT NULL
        )""",
    ),
    (
        # Version 4: a fleet's gateways on one database. Which gateways saw a rejected
        # chain (a JSON list of names; earlier entries: none known), and which gateway
        # wrote an audit event (earlier events: NULL).
        "ALTER TABLE rejected ADD COLUMN seen_by TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE audit ADD COLUMN gateway TEXT",
    ),
)
assert len(MIGRATIONS) == SCHEMA_VERSION
