"""Customer data: profiles, typed custom attributes, orders, events, loyalty ledger and the per-customer summary."""
