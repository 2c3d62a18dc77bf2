from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from kubeloop.cluster.native.layout import Layout
from kubeloop.cluster.native.pki import ensure_pki


def test_certificates_chain_to_the_ca_and_survive_a_rerun(tmp_path: Path) -> None:
    layout = Layout("dev", tmp_path / "state", tmp_path / "run")
    ensure_pki(layout)
    ca = x509.load_pem_x509_certificate((layout.pki / "ca.crt").read_bytes())
    apiserver = x509.load_pem_x509_certificate((layout.pki / "apiserver.crt").read_bytes())
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    apiserver.verify_directly_issued_by(ca)
    sans = apiserver.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc.cluster.local" in sans.get_values_for_type(x509.DNSName)
    kubelet = x509.load_pem_x509_certificate((layout.pki / "kubelet-client.crt").read_bytes())
    assert kubelet.subject.rfc4514_string() == "O=system:nodes,CN=system:node:dev"
    before = (layout.pki / "ca.crt").read_bytes()
    ensure_pki(layout)
    assert (layout.pki / "ca.crt").read_bytes() == before
    assert (layout.pki / "ca.key").stat().st_mode & 0o777 == 0o600


def test_etcd_serves_tls_and_the_apiserver_has_a_client_certificate(tmp_path: Path) -> None:
    layout = Layout("dev", tmp_path / "state", tmp_path / "run")
    ensure_pki(layout)
    ca = x509.load_pem_x509_certificate((layout.pki / "ca.crt").read_bytes())

    def usages(name: str) -> set[x509.ObjectIdentifier]:
        cert = x509.load_pem_x509_certificate((layout.pki / f"{name}.crt").read_bytes())
        cert.verify_directly_issued_by(ca)
        return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)

    # The server pair also authenticates etcd's peer connections, so it is both.
    assert usages("etcd-server") == {ExtendedKeyUsageOID.SERVER_AUTH,
                                     ExtendedKeyUsageOID.CLIENT_AUTH}  # fmt: skip
    assert usages("apiserver-etcd-client") == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert (layout.pki / "apiserver-etcd-client.key").stat().st_mode & 0o777 == 0o600


def test_a_cluster_of_an_older_version_gets_the_missing_certificates(tmp_path: Path) -> None:
    layout = Layout("dev", tmp_path / "state", tmp_path / "run")
    ensure_pki(layout)
    ca_before = (layout.pki / "ca.crt").read_bytes()
    admin_before = (layout.pki / "admin.crt").read_bytes()
    for name in ("etcd-server", "apiserver-etcd-client"):  # what an older kubeloop lacked
        (layout.pki / f"{name}.crt").unlink()
        (layout.pki / f"{name}.key").unlink()
    ensure_pki(layout)
    assert (layout.pki / "etcd-server.crt").exists()
    assert (layout.pki / "ca.crt").read_bytes() == ca_before
    assert (layout.pki / "admin.crt").read_bytes() == admin_before
