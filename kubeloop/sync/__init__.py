"""Live sync of local folders into running containers, through kubeloop's agent
(kubeloop.agent): only what differs is sent, two-way rules bring back what the app
writes, and nothing from a container is trusted (see _localfs.py)."""

from kubeloop.sync._local import Ignore, LocalEntry, scan
from kubeloop.sync._state import Batch, PodSync, RuleState, SyncRule
from kubeloop.sync._syncer import Syncer

__all__ = ["Batch", "Ignore", "LocalEntry", "PodSync", "RuleState", "SyncRule", "Syncer", "scan"]
