"""The NVTX-instrumented inference driver, run as a child process.

python -m perfctl.driver WORKLOAD.json
"""
