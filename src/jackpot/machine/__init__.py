"""Process-wide settings of the machine a run is on: glibc's malloc (`malloc`), GPU sharing (`gpu_sharing`), the
sweep-wide torch.compile cache (`compile_cache`), the global generators' lock (`global_rng`), the process's start
(`process_clock`) and its end (`process_exit`)."""
