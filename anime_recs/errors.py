"""Errors that end a step with one readable line instead of a traceback."""


class UserInputError(ValueError):
    """Bad input from the user (config, data file, query): says what and how to fix it.

    Step entry points catch it, print ``error: <message>`` on one line and exit 2.
    """


class DataValidationError(UserInputError):
    """A data file is missing columns, has wrong types or values out of range."""


class ArtifactError(UserInputError):
    """An artifact name, version or type that does not exist or does not match."""
