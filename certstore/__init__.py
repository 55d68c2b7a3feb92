"""Certificates: model, parsing, the store, the trust decision, the device identity."""
