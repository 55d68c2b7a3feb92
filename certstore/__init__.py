"""Everything about certificates: model, parsing, the store, the trust decision, the device identity."""
