"""Hand-written helpers around the ``casi.v1`` contract: codec, client, errors."""

PROTOCOL_VERSION = 1
