"""What the routes do: small keyword-only functions over a ``Session`` and ``ObjectStorage``."""
