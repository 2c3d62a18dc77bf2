"""Preflight logic of the native provider, on made-up cgroup trees and route tables."""

from __future__ import annotations

from pathlib import Path

from kubeloop.cluster.native.preflight import (
    CGROUP_V1_CONTROLLERS,
    cgroup_problems,
    route_conflicts,
)

ROUTE_HEADER = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"


def route_row(iface: str, dest: str, mask: str) -> str:
    def little_endian_hex(address: str) -> str:
        return "".join(f"{int(octet):02X}" for octet in reversed(address.split(".")))

    return (f"{iface}\t{little_endian_hex(dest)}\t00000000\t0001\t0\t0\t0\t"
            f"{little_endian_hex(mask)}\t0\t0\t0\n")  # fmt: skip


def test_cgroup_v1_names_the_missing_controller_and_how_to_mount_it(tmp_path: Path) -> None:
    for controller in CGROUP_V1_CONTROLLERS:
        if controller != "pids":
            (tmp_path / controller).mkdir()
    [problem] = cgroup_problems(tmp_path)
    assert problem.what == "cgroup v1 controllers not mounted: pids"
    assert f"mount -t cgroup -o pids cgroup {tmp_path}/pids" in problem.fix


def test_cgroup_v2_names_controllers_the_parent_does_not_delegate(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io\n")
    [problem] = cgroup_problems(tmp_path)
    assert problem.what == "cgroup v2 controllers unavailable: memory, pids"
    assert "subtree_control" in problem.fix


def test_a_complete_cgroup_tree_has_no_problem(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    assert cgroup_problems(tmp_path) == []


def test_no_cgroup_tree_at_all_is_a_problem(tmp_path: Path) -> None:
    [problem] = cgroup_problems(tmp_path / "absent")
    assert problem.what.startswith("cgroup v1 controllers not mounted: cpu, cpuacct")


def test_routes_inside_the_cluster_ranges_are_named() -> None:
    table = (ROUTE_HEADER
             + route_row("eth0", "0.0.0.0", "0.0.0.0")          # default: fine
             + route_row("eth0", "192.0.2.0", "255.255.255.0")  # unrelated: fine
             + route_row("kubeloop0", "10.244.0.0", "255.255.0.0")  # our own bridge
             + route_row("tun0", "10.0.0.0", "255.0.0.0")       # broader: ours win, fine
             + route_row("eth1", "10.244.3.0", "255.255.255.0")  # inside the pods
             + route_row("wg0", "10.96.0.0", "255.255.0.0"))  # the same as services  # fmt: skip
    assert route_conflicts(table) == [
        "the pod network 10.244.0.0/16 overlaps 10.244.3.0/24, routed on eth1",
        "the service network 10.96.0.0/16 overlaps 10.96.0.0/16, routed on wg0",
    ]
