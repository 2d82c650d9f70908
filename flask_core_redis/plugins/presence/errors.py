"""What the presence plugin raises besides ``ValueError`` for bad ids."""


class TooManyConnections(Exception):
    """A user already holds ``PRESENCE_MAX_CONNECTIONS`` live connections."""
