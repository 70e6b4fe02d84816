"""Errors a user can fix. Each message is one line: what is wrong and how to fix it.

The console scripts print a `UserError` as `error: <message>` and exit with status 2; any other exception is a
bug and keeps its traceback.
"""


class UserError(ValueError):
    """Bad input (a setting, a file, a checkpoint) that the user can fix."""


class ConfigError(UserError):
    """A configuration value that cannot work."""
