"""Who may do what. For now: the admin bearer token from COHORTA_ADMIN_TOKEN."""
