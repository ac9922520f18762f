"""Regional monitor: reads check batches for its region, probes devices, writes results back."""
