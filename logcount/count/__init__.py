"""The engine: bytes of log lines to one Delta (split, scan, classify, aggregate).

Imports shared modules and itself only; a source feeds it, a sink keeps what it makes."""
