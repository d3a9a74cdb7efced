"""The root of talmts' own errors: every error talmts raises on purpose (a bad file, a bad config value, a video
that cannot be decoded, ...) derives from :class:`TalmtsError`, so the command line can print it as one line and
exit with code 2, while anything else is a bug worth a traceback (``--debug``)."""

from __future__ import annotations


class TalmtsError(Exception):
    """An error whose message is written for the user: it names the file or key, the problem and the fix."""


class InputError(TalmtsError, ValueError):
    """Inputs that cannot work together (a subset with no video, options that exclude each other, a score file of
    another dataset); the message says which and how to fix it. Files with a wrong record raise SchemaError."""
