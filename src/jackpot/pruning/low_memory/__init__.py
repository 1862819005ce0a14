"""The optional low-memory scoring path (`pruner.options.offload=disk`): memory-lean layers and saved
activations parked in temp files. The rest of `jackpot.pruning` reads only `choose_offload`, `low_memory` and
`park`; the scores are the in-memory ones up to float32 summation order."""
