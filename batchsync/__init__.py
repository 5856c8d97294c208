"""batchsync: keep the shop order statuses of many Sendcloud integrations in their desired state."""

__version__ = "0.1.0"
