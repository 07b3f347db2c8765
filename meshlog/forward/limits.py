"""The receiver's limits, in a module of their own so the CLI can show them without loading the receiver."""

MAX_MESSAGE_BYTES = 64 << 20  # a forward message larger than this is refused (fluent-bit sends ≤ a few MiB)
IDLE_TIMEOUT = 60.0  # seconds a connection may stay silent before it is closed
