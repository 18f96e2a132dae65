"""Runnable programs (python -m apps.NAME --help) and the course's app modules."""
