"""Everything that touches the network: TLS connector, SIP relay, provisioning, admin web app, CLI."""
