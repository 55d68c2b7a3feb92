"""The provisioning client: fetch a provisioning document over HTTPS (through the TLS
connector, with HTTP digest authentication) and apply its parameters to the store.

- :mod:`~gateway.provisioning.document` reads and checks a document (pure);
- :mod:`~gateway.provisioning.apply` applies it, all or nothing;
- :mod:`~gateway.provisioning.client` fetches it; :mod:`~gateway.provisioning.service`
  runs the client at start, on an interval and on demand.
"""
