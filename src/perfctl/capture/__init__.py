"""Capturing a workload: find nsys, run the driver under it, and leave a self-describing run folder."""
