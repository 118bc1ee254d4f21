"""One exception for everything a user can get wrong.

The CLI prints its message on one line and exits non-zero, so every message must name the
file (and line, for lists) and the reason; never raise it for programming errors.
"""


class MosqaError(Exception):
    """Bad input or configuration, reported to the user as one line."""
