"""Views of a `Report`: rich table, JSON, CSV, markdown. Views only read; they never compute."""
