"""One exception type for user-facing errors: the CLI prints it as one line and exits non-zero.

Exercised by every command, e.g. `taia apply --base missing/ --adapter a/ --out o/`.
"""


class TaiaError(Exception):
    """A problem with the user's inputs, reported as a single clear line (no traceback)."""
