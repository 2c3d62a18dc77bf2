"""Parity between environments: what differs between two renders of a project, or
between a render and what runs in the cluster, in the fields that change behaviour
(images, commands, env, resources, replicas, probes, security, volumes, config and
secret keys, Service ports, Ingress hosts, feature flags). Differences declared in
``parity.ignore`` are expected; any other is flagged."""

from kubeloop.parity.compare import MASK, Difference, ParityReport, category, compare
from kubeloop.parity.format import table, to_json
from kubeloop.parity.ignore import IgnoreRule, parse_rules
from kubeloop.parity.live import prune_to, read_live, strip_server_fields, without_dev_mode
from kubeloop.parity.normalise import flatten
from kubeloop.parity.run import compare_environments, compare_live, load_environment

__all__ = [
    "MASK",
    "Difference",
    "IgnoreRule",
    "ParityReport",
    "category",
    "compare",
    "compare_environments",
    "compare_live",
    "flatten",
    "load_environment",
    "parse_rules",
    "prune_to",
    "read_live",
    "strip_server_fields",
    "table",
    "to_json",
    "without_dev_mode",
]
