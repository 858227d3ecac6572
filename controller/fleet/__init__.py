"""The fleet: the gRPC client, the embedded local agent, the inventory and connections, discovery, SSH deployment, the farm CA and the scheduler."""
