"""`logcount serve`: the HTTP API, /metrics and the dashboard."""
