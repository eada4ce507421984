"""infoscope probes: attach to a live torch model and record what its layers know."""
