"""Runnable tutorials (see README.md here); each is ``python -m experiments.tutorials.tN_...``."""
