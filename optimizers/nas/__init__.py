"""Neural architecture search for a device: the MobileNetV3-style space (space.py) and the evolutionary search
over a measured per-block latency table (search.py)."""
