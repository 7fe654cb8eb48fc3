"""The imperative shell: the engine, its worker, step execution, retries, timers, leases."""
