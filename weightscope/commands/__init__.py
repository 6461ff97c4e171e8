"""The uses built on reports: compare, trend and gate, and the sources they read."""
