-- Flush dirty pages so that every benchmark round starts from the same state.
CHECKPOINT
