"""Hand-rolled Kafka wire protocol pieces for the raw-socket tests.

Only what the bad-input tests need: request framing, ApiVersions v0, Produce v3
(non-flexible), record batch v2 encoding with CRC-32C, and a few decoders. Written from
the Kafka protocol specification, independently of the broker's own code, so that a
shared misunderstanding cannot hide a bug.
"""

import socket
import struct
import time

# ---------------------------------------------------------------------------
# CRC-32C (Castagnoli), table driven, pure Python.

_CRC32C_POLY = 0x82F63B78
_CRC32C_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ _CRC32C_POLY if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283, "crc32c self-check"

# ---------------------------------------------------------------------------
# Primitive encoders.


def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def string(s):
    if s is None:
        return i16(-1)
    b = s.encode() if isinstance(s, str) else s
    return i16(len(b)) + b


def nbytes(b):
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def uvarint(v):
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v):
    """Zig-zag signed varint (32 or 64 bit, Python ints are unbounded)."""
    return uvarint((v << 1) ^ (v >> 63))


def varbytes(b):
    if b is None:
        return varint(-1)
    return varint(len(b)) + b


# ---------------------------------------------------------------------------
# Primitive decoder.


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError(f"short read: need {n} at {self.pos}, have {len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def remaining(self):
        return len(self.data) - self.pos


# ---------------------------------------------------------------------------
# Framing.

API_PRODUCE = 0
API_FETCH = 1
API_LIST_OFFSETS = 2
API_METADATA = 3
API_API_VERSIONS = 18
API_CREATE_TOPICS = 19

UNSUPPORTED_VERSION = 35
CORRUPT_MESSAGE = 2
INVALID_RECORD = 87
INVALID_TOPIC_EXCEPTION = 17


def request_header_v1(api_key, api_version, correlation_id, client_id="stillwater-raw-test"):
    return i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


def connect(addr, timeout=10.0):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.settimeout(timeout)
    return s


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_frame(sock):
    (n,) = struct.unpack(">i", recv_exact(sock, 4))
    if n < 0 or n > 64 * 1024 * 1024:
        raise ValueError(f"implausible response length {n}")
    return recv_exact(sock, n)


def roundtrip(sock, api_key, api_version, body, correlation_id=1):
    sock.sendall(frame(request_header_v1(api_key, api_version, correlation_id) + body))
    resp = recv_frame(sock)
    r = Reader(resp)
    got = r.i32()
    if got != correlation_id:
        raise ValueError(f"correlation id {got}, expected {correlation_id}")
    return r


def wait_closed(sock, timeout=10.0):
    """True if the peer closes (EOF or reset) within timeout; bytes it sent meanwhile are
    returned as the second element."""
    deadline = time.monotonic() + timeout
    received = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, bytes(received)
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return False, bytes(received)
        except (ConnectionResetError, BrokenPipeError):
            return True, bytes(received)
        if not chunk:
            return True, bytes(received)
        received += chunk


# ---------------------------------------------------------------------------
# ApiVersions.


def parse_api_versions_v0(r: Reader):
    """Body of an ApiVersionsResponse v0 after the correlation id: error_code, then
    [api_key min max]. Returns (error_code, {api_key: (min, max)})."""
    error_code = r.i16()
    n = r.i32()
    if n < 0 or n > 1000:
        raise ValueError(f"implausible api_keys count {n}")
    keys = {}
    for _ in range(n):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        keys[k] = (lo, hi)
    return error_code, keys


def api_versions(sock, correlation_id=1):
    r = roundtrip(sock, API_API_VERSIONS, 0, b"", correlation_id)
    return parse_api_versions_v0(r)


# ---------------------------------------------------------------------------
# Record batch v2.


def encode_record(offset_delta, timestamp_delta, key, value, headers=()):
    body = (
        i8(0)  # attributes
        + varint(timestamp_delta)
        + varint(offset_delta)
        + varbytes(key)
        + varbytes(value)
        + varint(len(headers))
    )
    for hk, hv in headers:
        hkb = hk.encode() if isinstance(hk, str) else hk
        body += varint(len(hkb)) + hkb + varbytes(hv)
    return varint(len(body)) + body


def record_batch(records, base_timestamp=None, attributes=0, raw_records=None, count=None,
                 producer_id=-1, producer_epoch=-1, base_sequence=-1):
    """records: list of (key, value, headers). A magic-2 batch with base offset 0 and a
    correct CRC-32C; by default uncompressed, non-transactional, non-idempotent.

    For hand-made poison: `attributes` sets the attribute bits (codec in bits 0-2, bit 4
    transactional, bit 5 control), `raw_records` replaces the encoded records with any bytes
    (compressed or garbage), `count` overrides the record count (last offset delta follows)."""
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    if raw_records is None:
        raw_records = b"".join(
            encode_record(i, 0, k, v, h) for i, (k, v, h) in enumerate(records)
        )
    if count is None:
        count = len(records)
    after_crc = (
        i16(attributes)
        + i32(count - 1)  # last offset delta
        + i64(base_timestamp)
        + i64(base_timestamp)  # max timestamp
        + i64(producer_id)
        + i16(producer_epoch)
        + i32(base_sequence)
        + i32(count)
        + raw_records
    )
    crc = crc32c(after_crc)
    after_length = i32(-1) + i8(2) + struct.pack(">I", crc) + after_crc  # leader epoch, magic
    return i64(0) + i32(len(after_length)) + after_length


# Offset of the first byte covered by the CRC within a batch: base offset (8) + length (4)
# + partition leader epoch (4) + magic (1) + crc (4).
BATCH_CRC_COVERED_FROM = 21
BATCH_CRC_AT = 17


# ---------------------------------------------------------------------------
# Produce v3.


def produce_request_v3(topic, partition, records_bytes, acks=-1, timeout_ms=10000):
    return (
        string(None)  # transactional id
        + i16(acks)
        + i32(timeout_ms)
        + i32(1)
        + string(topic)
        + i32(1)
        + i32(partition)
        + nbytes(records_bytes)
    )


def parse_produce_response_v3(r: Reader):
    """Returns {(topic, partition): (error_code, base_offset)}."""
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            err = r.i16()
            base = r.i64()
            r.i64()  # log append time
            out[(topic, p)] = (err, base)
    return out


# ---------------------------------------------------------------------------
# Fetch v4 and Metadata v1.


def fetch_request_v4(topic, partition, offset, max_wait_ms=0, min_bytes=1,
                     max_bytes=64 << 20, partition_max_bytes=64 << 20):
    return (
        i32(-1)  # replica id
        + i32(max_wait_ms)
        + i32(min_bytes)
        + i32(max_bytes)
        + i8(0)  # isolation level
        + i32(1) + string(topic)
        + i32(1) + i32(partition) + i64(offset) + i32(partition_max_bytes)
    )


def fetch_frame(topic, partition, offset, correlation_id, **kw):
    return frame(request_header_v1(API_FETCH, 4, correlation_id)
                 + fetch_request_v4(topic, partition, offset, **kw))


def metadata_v1(sock, topics, correlation_id=1):
    """Metadata v1 for `topics` (auto-creating them, as v1 does); the raw response reader."""
    body = i32(len(topics)) + b"".join(string(t) for t in topics)
    return roundtrip(sock, API_METADATA, 1, body, correlation_id)


def parse_metadata_v1(r: Reader):
    """Body of a MetadataResponse v1 after the correlation id: {"brokers": {id: (host,
    port)}, "controller": id, "topics": {name: (error, {partition: (error, leader, replicas,
    isr)})}}."""
    brokers = {}
    for _ in range(r.i32()):
        node, host, port = r.i32(), r.string(), r.i32()
        r.string()  # rack
        brokers[node] = (host, port)
    controller = r.i32()
    topics = {}
    for _ in range(r.i32()):
        err, name = r.i16(), r.string()
        r.i8()  # is_internal
        partitions = {}
        for _ in range(r.i32()):
            perr, index, leader = r.i16(), r.i32(), r.i32()
            replicas = [r.i32() for _ in range(r.i32())]
            isr = [r.i32() for _ in range(r.i32())]
            partitions[index] = (perr, leader, replicas, isr)
        topics[name] = (err, partitions)
    return {"brokers": brokers, "controller": controller, "topics": topics}


# ---------------------------------------------------------------------------
# UnregisterBroker (API 64, v0, a flexible version): no Python client has it (Kafka's Java
# admin client's unregisterBroker does).

API_UNREGISTER_BROKER = 64


def unregister_broker(sock, broker_id, correlation_id=1):
    """Returns (error_code, error_message)."""
    header = i16(API_UNREGISTER_BROKER) + i16(0) + i32(correlation_id) + string("stillwater-test")
    header += uvarint(0)  # the request header's tagged fields (header v2)
    sock.sendall(frame(header + i32(broker_id) + uvarint(0)))
    r = Reader(recv_frame(sock))
    got = r.i32()
    if got != correlation_id:
        raise ValueError(f"correlation id {got}, expected {correlation_id}")
    r.take(1)  # the response header's tagged fields (header v1): none
    r.i32()  # throttle_time_ms
    err = r.i16()
    n = r.take(1)[0]  # compact nullable string: length + 1 (short messages: one byte)
    if n & 0x80:
        n = (n & 0x7F) | (r.take(1)[0] << 7)
    message = None if n == 0 else r.take(n - 1).decode()
    return err, message
