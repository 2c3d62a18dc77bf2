"""Certificates and keys of a native cluster: one CA, one client or serving certificate
per component, and the service-account signing key.

ECDSA P-256 everywhere: Kubernetes accepts it for TLS and service-account tokens, and a
key takes microseconds to make where RSA-2048 takes tens of milliseconds.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeloop.cluster.native.layout import KUBERNETES_SERVICE_IP, NODE_IP, Layout

VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class CertSpec:
    name: str
    common_name: str
    organization: str | None = None
    server: bool = False
    client: bool = True
    dns_names: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()


def cert_specs(layout: Layout) -> list[CertSpec]:
    node = layout.node_name
    return [
        CertSpec(
            "apiserver",
            "kube-apiserver",
            server=True,
            client=False,
            dns_names=(
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
            ),
            ips=("127.0.0.1", KUBERNETES_SERVICE_IP, NODE_IP),
        ),
        CertSpec("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
        # etcd serves clients and its (only) peer over TLS and asks both for a certificate
        # of this CA: without one, nobody on the host reads or writes the cluster's state.
        CertSpec(
            "etcd-server",
            "kubeloop-etcd",
            server=True,
            client=True,  # a peer connection authenticates with the same pair
            dns_names=("localhost",),
            ips=("127.0.0.1",),
        ),
        CertSpec("apiserver-etcd-client", "kube-apiserver-etcd-client"),
        CertSpec("admin", "kubeloop-admin", "system:masters"),
        CertSpec("controller-manager", "system:kube-controller-manager"),
        CertSpec("scheduler", "system:kube-scheduler"),
        CertSpec("kube-proxy", "system:kube-proxy"),
        CertSpec("coredns", "system:coredns"),
        CertSpec("kubelet-client", f"system:node:{node}", "system:nodes"),
        CertSpec(
            "kubelet",
            f"system:node:{node}",
            server=True,
            client=False,
            dns_names=(node, "localhost"),
            ips=("127.0.0.1", NODE_IP),
        ),
        CertSpec(
            "controller-manager-serving",
            "kube-controller-manager",
            server=True,
            client=False,
            dns_names=("localhost",),
            ips=("127.0.0.1",),
        ),
        CertSpec(
            "scheduler-serving",
            "kube-scheduler",
            server=True,
            client=False,
            dns_names=("localhost",),
            ips=("127.0.0.1",),
        ),
    ]


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _make_ca(pki: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    name = _name("kubeloop-ca")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _write_key(pki / "ca.key", key)
    _write_cert(pki / "ca.crt", cert)
    return cert, key


def _load_ca(pki: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def _issue(
    spec: CertSpec, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, pki: Path
) -> None:
    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    usages = []
    if spec.server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if spec.client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(spec.common_name, spec.organization))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    alt_names: list[x509.GeneralName] = [x509.DNSName(d) for d in spec.dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in spec.ips]
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    _write_key(pki / f"{spec.name}.key", key)
    _write_cert(pki / f"{spec.name}.crt", builder.sign(ca_key, hashes.SHA256()))


def ensure_pki(layout: Layout) -> None:
    """Create whatever certificate or key is missing; existing ones are kept, so a
    recovered cluster keeps trusting the kubeconfigs already handed out."""
    pki = layout.pki
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    ca_cert, ca_key = _load_ca(pki) if (pki / "ca.key").exists() else _make_ca(pki)
    for spec in cert_specs(layout):
        if not (pki / f"{spec.name}.crt").exists():
            _issue(spec, ca_cert, ca_key, pki)
    if not (pki / "sa.key").exists():
        key = _new_key()
        _write_key(pki / "sa.key", key)
        (pki / "sa.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
