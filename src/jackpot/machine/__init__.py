"""Process-wide settings of the machine a run is on: glibc's malloc (`malloc`) and GPU sharing (`gpu_sharing`)."""
