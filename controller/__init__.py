"""farmctl: the controller that builds candidates, ships them to farm-agents and compares the results."""

import agent  # noqa: F401  (turns gRPC's fork handlers off before grpc is imported; see agent/__init__.py)
