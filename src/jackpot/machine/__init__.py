"""Process-wide settings of the machine a run is on: glibc's malloc (`malloc`), GPU sharing (`gpu_sharing`) and the
sweep-wide torch.compile cache (`compile_cache`)."""
