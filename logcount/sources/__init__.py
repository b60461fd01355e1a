"""The sources: pipe (supervisor, reader), tail (follow) and rollup (files, counters, rows)
feed the engine and hand its deltas to a sink."""
