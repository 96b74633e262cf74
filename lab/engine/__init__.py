"""Training: the model, one step and one timed epoch, a run resolved once, --fast, checkpoints, records,
data-parallel processes, the runs' progress lines and the profiler. Imports lab.core and lab.data."""
