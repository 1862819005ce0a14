"""The bookkeeping of runs on disk, which a researcher never needs to read: what makes two runs the same run
(`identity`), whether a folder holds it (`output_dir`, `results`), who is training it (`claim`, `cell_lock`,
`file_lock`), files written whole or not at all (`atomic_io`, `checkpoint_io`), the shared dense trunk and its
keys (`trunk`, `cache_keys`), the order a sweep launches in (`sweep_plan`), fault injection for tests
(`faults`) and a finished run's summary on the terminal (`summary`)."""
