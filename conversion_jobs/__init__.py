"""Conversion of many inputs as one job, resumable, on one process or every process torchrun starts.

``run_job(args)`` is what ``inference.py --output-dir DIR`` (or ``--input-list FILE``) runs; see
documentation/inference.md, "Many videos: one job on every GPU and machine".
"""
from conversion_jobs.job import run_job

__all__ = ["run_job"]
