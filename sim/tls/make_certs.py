"""Makes the simulator's TLS files (run once; the files are committed): an Ed25519 CA and one
Ed25519 certificate for every simulated broker address (10.77.1.1-7), for server and client
authentication, valid 2000-2099 (madsim's clock starts in 2022). Ed25519, because its
signatures draw no randomness: a run's TLS handshakes replay bit for bit from the seed.
These keys are test data for the simulator only.

    python sim/tls/make_certs.py sim/tls
"""

import datetime
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

out = Path(sys.argv[1])
begin = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
end = datetime.datetime(2099, 12, 31, tzinfo=datetime.timezone.utc)


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "stillwater-sim")])


ca_key = ed25519.Ed25519PrivateKey.generate()
ca = (x509.CertificateBuilder()
      .subject_name(name("sim CA")).issuer_name(name("sim CA"))
      .public_key(ca_key.public_key()).serial_number(1)
      .not_valid_before(begin).not_valid_after(end)
      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
      .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                   key_encipherment=False, data_encipherment=False,
                                   key_agreement=False, key_cert_sign=True, crl_sign=True,
                                   encipher_only=False, decipher_only=False), critical=True)
      .sign(ca_key, None))
key = ed25519.Ed25519PrivateKey.generate()
sans = [x509.IPAddress(ipaddress.ip_address(f"10.77.1.{i}")) for i in range(1, 8)]
cert = (x509.CertificateBuilder()
        .subject_name(name("sim broker")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(2)
        .not_valid_before(begin).not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(sans + [x509.DNSName("localhost")]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, None))
pem = serialization.Encoding.PEM
(out / "ca.pem").write_bytes(ca.public_bytes(pem))
(out / "broker.pem").write_bytes(cert.public_bytes(pem))
(out / "broker-key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
