"""Live sync of local folders into running containers (see agent.go for the far end)."""

from kubeloop.sync.syncer import Batch, Syncer, SyncRule

__all__ = ["Batch", "SyncRule", "Syncer"]
