"""The functional core: fold, the deterministic loop, the workflow instance, replay checks."""
