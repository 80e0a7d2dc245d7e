"""Detection-quality evals: a versioned labelled set, a generator for its recordings, metrics,
and `python -m evals` (`make eval`) comparing two configurations on it."""
