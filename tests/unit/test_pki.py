from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

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
