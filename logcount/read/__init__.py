"""The read side: windows and reports over what the sinks hold (report, drill, the Counts
API, render, watch)."""
