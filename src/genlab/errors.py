"""The error types a user sees instead of a traceback, and the one-line warning."""
import sys


class ConfigError(ValueError):
    """A config value is invalid. The message reads `key: got VALUE, expected WHAT`."""

    def __init__(self, key: str, value: object, expected: str):
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"{key}: got {value!r}, expected {expected}")


class DataError(RuntimeError):
    """A data set is missing, malformed or failed its checksum; the message names the file."""


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the message names the step and the metric."""


class RunFailed(RuntimeError):
    """A run stopped without a result; its results.json says `status: failed` and why."""


def warn_in_one_line(message: str) -> None:
    """`warning: …` on stderr, from rank zero: Python's warnings add the source line that raised them, a second line a
    user has nothing to do with."""
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:
        print(f"warning: {message}", file=sys.stderr, flush=True)
