"""Worker: the leader-elected scheduler that dispatches check batches, and the result evaluator."""
