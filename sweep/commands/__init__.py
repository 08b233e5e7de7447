"""One module per `flushsweep` subcommand; each exposes ``register(subparsers)``."""
