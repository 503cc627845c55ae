"""Running the chain: one session per stream from a source to its sinks; replay, serve, device."""
