"""Network side: TLS connector, SIP relay, provisioning, admin web app, CLI."""
