"""The management web UI: server-rendered pages (Jinja2) with htmx and Alpine.js, over the same services as the API."""
