"""Makes the fuzz corpus of `broker/tests/corpus.rs` (run once; the files are committed, and
new cases are added here): malformed SASL exchanges and broken TLS records, each a seed the
test sends as it is and then mutated.

    python broker/tests/corpus/make_corpus.py broker/tests/corpus

A SASL file: b'A' (SaslHandshake v1, then each token in a SaslAuthenticate v2 request) or b'R'
(SaslHandshake v0, then each token as a bare frame), the mechanism (u16 length, bytes), then the
tokens (u32 length, bytes each). A TLS file: the bytes a client sends, as they are.
"""

import ssl
import struct
import sys
from pathlib import Path

out = Path(sys.argv[1])


def sasl(name, form, mechanism, tokens):
    data = form + struct.pack(">H", len(mechanism)) + mechanism
    for t in tokens:
        data += struct.pack(">I", len(t)) + t
    (out / "sasl" / f"{name}.bin").write_bytes(data)


S512 = b"SCRAM-SHA-512"
FIRST = b"n,,n=alice,r=fuzzclientnonce"
for form, tag in ((b"A", "request"), (b"R", "bare")):
    sasl(f"plain-empty-{tag}", form, b"PLAIN", [b""])
    sasl(f"plain-no-separators-{tag}", form, b"PLAIN", [b"alicealice-secret"])
    sasl(f"plain-only-separators-{tag}", form, b"PLAIN", [b"\0\0\0\0"])
    sasl(f"plain-not-utf8-{tag}", form, b"PLAIN", [b"\0\xff\xfe\0\xc3\x28"])
    sasl(f"scram-first-no-gs2-header-{tag}", form, S512, [b"n=alice,r=abc"])
    sasl(f"scram-first-channel-binding-{tag}", form, S512, [b"p=tls-unique,,n=alice,r=abc"])
    sasl(f"scram-first-other-authzid-{tag}", form, S512, [b"n,a=bob,n=alice,r=abc"])
    sasl(f"scram-first-bad-escape-{tag}", form, S512, [b"n,,n=al=2Xice,r=abc"])
    sasl(f"scram-first-empty-nonce-{tag}", form, S512, [b"n,,n=alice,r="])
    sasl(f"scram-first-empty-{tag}", form, S512, [b""])
    sasl(f"scram-first-extension-{tag}", form, S512, [b"n,,m=ext,n=alice,r=abc"])
    sasl(f"scram-final-wrong-nonce-{tag}", form, S512, [FIRST, b"c=biws,r=somebodyelse,p=AAAA"])
    sasl(f"scram-final-bad-proof-{tag}", form, S512, [FIRST, b"c=biws,r=fuzzclientnonce,p=!!!"])
    sasl(f"scram-final-channel-binding-{tag}", form, S512,
         [FIRST, b"c=cD10bHMtdW5pcXVlLCw=,r=fuzzclientnonce,p=AAAA"])
    sasl(f"scram-final-missing-proof-{tag}", form, S512, [FIRST, b"c=biws,r=fuzzclientnonce"])
    sasl(f"scram-final-extension-{tag}", form, S512,
         [FIRST, b"c=biws,r=fuzzclientnonce,m=x,p=AAAA"])
    sasl(f"scram-three-tokens-{tag}", form, S512, [FIRST, b"c=biws,r=x,p=AAAA", b"more"])
sasl("plain-huge-user", b"A", b"PLAIN", [b"\0" + b"a" * 30_000 + b"\0pw"])
sasl("scram-first-huge", b"R", S512, [b"n,,n=" + b"a" * 30_000 + b",r=abc"])
sasl("unknown-mechanism", b"A", b"GSSAPI", [b"\x60\x82"])
sasl("mechanism-not-utf8", b"A", b"\xff\xfe", [b""])
sasl("mechanism-huge", b"A", b"M" * 20_000, [b""])
sasl("sha256-token-on-sha512", b"A", b"SCRAM-SHA-256", [FIRST, b"c=biws,r=x,p=AAAA"])


def tls(name, data):
    (out / "tls" / f"{name}.bin").write_bytes(data)


# A real ClientHello, as Python's OpenSSL writes one.
ctx = ssl.create_default_context()
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
conn = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
try:
    conn.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = outgoing.read()
assert hello[0] == 0x16, hello[:5]
tls("client-hello-whole", hello)
for cut in (1, 4, 5, 6, 9, 43, len(hello) // 2, len(hello) - 1):
    tls(f"client-hello-cut-at-{cut}", hello[:cut])
tls("client-hello-twice", hello + hello)
body = hello[5:]
tls("client-hello-one-byte-records",
    b"".join(b"\x16\x03\x01\x00\x01" + body[i:i + 1] for i in range(len(body))))
tls("client-hello-one-byte-records-cut",
    b"".join(b"\x16\x03\x01\x00\x01" + body[i:i + 1] for i in range(len(body) // 3)))
tls("record-length-zero", b"\x16\x03\x01\x00\x00")
tls("record-length-over-the-limit", b"\x16\x03\x01\x48\x01" + b"\x01" * 100)
tls("record-length-max-then-nothing", b"\x16\x03\x03\xff\xff")
tls("alert-first", b"\x15\x03\x03\x00\x02\x02\x28")
tls("application-data-first", b"\x17\x03\x03\x00\x10" + b"\x00" * 16)
tls("change-cipher-spec-first", b"\x14\x03\x03\x00\x01\x01")
tls("unknown-content-type", b"\x63\x03\x03\x00\x04abcd")
tls("sslv2-hello", b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + b"\x00" * 37)
tls("handshake-length-larger-than-record",
    b"\x16\x03\x01\x00\x08\x01\xff\xff\xff\x03\x03\x00\x00")
tls("kafka-api-versions-in-plaintext",
    struct.pack(">i", 14) + struct.pack(">hhi", 18, 0, 1) + struct.pack(">h", 4) + b"fuzz")
tls("garbage", bytes(range(256)) * 4)
tls("silence", b"")
