"""The two kinds of failure perfctl reports to a user, each with its exit code.

`BadInput` (exit 2): the user gave something perfctl cannot use (a missing path, a file that is not an
nsys export, an existing run folder). `CaptureFailed` (exit 1): the inputs were fine but running the
workload or nsys went wrong. `OutputFailed` (exit 1): a result could not be written (a full disk, a
read-only folder); nothing half-written is left under the result's name. All carry a one-line message
meant to be printed without a traceback.
"""


class PerfctlError(Exception):
    exit_code = 1


class BadInput(PerfctlError):
    exit_code = 2


class CaptureFailed(PerfctlError):
    exit_code = 1


class OutputFailed(PerfctlError):
    exit_code = 1
