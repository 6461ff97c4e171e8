"""How a run executes (device, workers, memory budget, cache); never changes a number."""
