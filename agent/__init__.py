"""farm-agent: the device daemon that receives models and measures them on its own hardware."""

__version__ = "0.1.0"
