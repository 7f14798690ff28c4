"""Rules meet the store: the field catalog from the database, customer snapshots, and compiled rules run on the
store's own connection. Shared by preview, explain and (later) live membership."""
