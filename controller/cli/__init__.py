"""The farmctl command line: one module per command family, shared flags in flags.py."""
