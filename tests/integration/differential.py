"""The differential harness: the same requests sent to Apache Kafka and to the broker, their
answers compared field by field.

A case (a table of `differential/cases/*.toml`) is data: a list of steps, each a request
given as the fields of Kafka's own message schema (the names of kafka-python's protocol
classes, which are generated from those schemas), and whether its answer is compared. Every
case runs at the lowest and at the highest version of its API that both servers serve, on
fresh names (`{topic}`, `{group}`, `{txn}` and `{name}` in a request become names of that case
and version; `"<null>"` is a null). A step is sent again while its error code says "not yet"
(a coordinator still loading, on either server; `retry_while` names other codes, or none),
and while its answer does not say what `until` expects (`{path: value}`, for a change a
server shows a moment after it answered);
`only` limits a step's comparison to some fields; a `scram` step logs in (SaslHandshake,
SaslAuthenticate) and compares the error codes; a case with `listener = "sasl"` goes to SASL
listeners. Answers are turned into plain data, cleaned of what must differ (the servers'
addresses, cluster ids, throttle times …: `differential/differences.toml`, each with its
reason) and compared; any other difference fails the case.

The requests are encoded and the answers decoded by kafka-python's protocol layer, a codec
neither server shares; record batches are written by `wire.record_batch` and read back here
(offsets, keys, values, headers; not timestamps or CRCs, which depend on the moment).
"""

import base64
import gzip
import hashlib
import hmac
import secrets
import fnmatch
import socket
import struct
import time
import tomllib
import uuid
from pathlib import Path

from kafka.protocol.api_message import ApiMessage

import wire

HERE = Path(__file__).parent / "differential"
# Names of one run: a Kafka kept running between runs still has the last run's topics.
RUN = secrets.token_hex(3)
# A topic's leader may be elected a moment after CreateTopics answers.
LEADER_WAIT_S = 30
# TOML has no null: this string stands for it in a request.
NULL = "<null>"
# How long a step with `retry_while` (error codes that say "not yet": a coordinator loading)
# is sent again.
RETRY_S = 30
# What a coordinator that is still loading answers (COORDINATOR_LOAD_IN_PROGRESS,
# COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR): a step is sent again while it says so, unless
# it names its own `retry_while`.
NOT_YET = [14, 15, 16]


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


# APIs kafka-python's protocol layer has no classes of: their schemas are ours
# (`differential_schemas`).
import differential_schemas  # noqa: E402


class ConsumerGroupHeartbeatRequest(ApiMessage, load_json=differential_schemas): pass
class ConsumerGroupHeartbeatResponse(ApiMessage, load_json=differential_schemas): pass
class ConsumerGroupDescribeRequest(ApiMessage, load_json=differential_schemas): pass
class ConsumerGroupDescribeResponse(ApiMessage, load_json=differential_schemas): pass
class GetTelemetrySubscriptionsRequest(ApiMessage, load_json=differential_schemas): pass
class GetTelemetrySubscriptionsResponse(ApiMessage, load_json=differential_schemas): pass
class PushTelemetryRequest(ApiMessage, load_json=differential_schemas): pass
class PushTelemetryResponse(ApiMessage, load_json=differential_schemas): pass


def _messages():
    requests, responses = {}, {}
    for cls in _all_subclasses(ApiMessage):
        if getattr(cls, "_class_version", None) is not None or cls._json is None:
            continue
        name = cls.__name__
        if name.endswith("Request"):
            requests.setdefault(name[: -len("Request")], cls)
        elif name.endswith("Response"):
            responses.setdefault(name[: -len("Response")], cls)
    return requests, responses


REQUESTS, RESPONSES = _messages()


class Server:
    """One server (Kafka or the broker) seen through one connection to the first address of
    `bootstrap`; in a cluster, a step's `to` sends it through a connection to another node
    (`via`)."""

    def __init__(self, name, bootstrap, tls=None):
        self.name = name
        host, port = bootstrap.split(",")[0].rsplit(":", 1)
        self.addr = (host, int(port))
        # An ssl.SSLContext for a TLS listener, or None.
        self.tls = tls
        self.sock = None
        self.correlation_id = 0
        self.versions = None
        # Values kept from this server's answers (a producer id …), by name.
        self.saved = {}
        # Connections to the cluster's other nodes, by address.
        self.others = {}

    def via(self, addr):
        """This server seen through a connection to the node at `addr`."""
        if addr == self.addr:
            return self
        other = self.others.get(addr)
        if other is None:
            other = Server(self.name, f"{addr[0]}:{addr[1]}", self.tls)
            other.versions = self.versions
            other.saved = self.saved
            self.others[addr] = other
        return other

    def connect(self):
        self.close()
        sock = socket.create_connection(self.addr, timeout=30)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_hostname="localhost")
        sock.settimeout(30)
        self.sock = sock

    def close(self):
        for other in self.others.values():
            other.close()
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def call(self, api, version, fields):
        """Send `api` at `version` with `fields`; the decoded answer, or a string saying the
        connection was closed instead."""
        if self.sock is None:
            self.connect()
        cls = REQUESTS[api]
        request = build(cls, fields, version)
        self.correlation_id += 1
        request.with_header(correlation_id=self.correlation_id, client_id="differential")
        frame = request.encode(version=version, header=True, framed=True)
        try:
            self.sock.sendall(frame)
            size = struct.unpack(">i", wire.recv_exact(self.sock, 4))[0]
            body = wire.recv_exact(self.sock, size)
        except (ConnectionError, OSError, EOFError, ValueError):
            self.close()
            return "connection closed"
        try:
            return RESPONSES[api].decode(body, version=version, header=True)
        except struct.error:
            if api != "ApiVersions":
                raise
            # An ApiVersions error is answered in version 0's form, whatever was asked.
            return RESPONSES[api].decode(body, version=0, header=True)

    def api_versions(self):
        """{api name: (min, max)} this server serves."""
        if self.versions is None:
            answer = self.call("ApiVersions", 0, {})
            keys = {cls.API_KEY: name for name, cls in REQUESTS.items()}
            self.versions = {
                keys[k.api_key]: (k.min_version, k.max_version)
                for k in answer.api_keys
                if k.api_key in keys
            }
        return self.versions


def build(cls, fields, version):
    """A message of class `cls` (a request or one of its structs) from plain data."""
    struct_ = cls._struct
    values = {}
    for name, value in fields.items():
        field = struct_.fields.get(name)
        if field is None:
            raise KeyError(f"{struct_.name} has no field {name!r}")
        if value == NULL:
            values[name] = None
            continue
        if field.is_struct():
            value = build(field.data_class, value, None)
        elif field.is_struct_array() and value is not None:
            value = [build(field.data_class, v, None) for v in value]
        elif name == "records" and isinstance(value, list):
            value = b"".join(_batch(batch) for batch in value)
        elif field.type_str in ("bytes", "records") and isinstance(value, str):
            value = value.encode()
        elif field.type_str in ("int8", "int16", "int32", "int64") and isinstance(value, str):
            value = int(value)  # a saved value, substituted
        elif field.type_str == "uuid" and isinstance(value, str):
            value = uuid.UUID(value)
        values[name] = value
    if version is None:
        return cls(**values)
    return cls(version=version, **values)


def _bytes(v):
    return v.encode() if isinstance(v, str) else v


def _batch(batch):
    """A record batch: a list of records, or {records, producer_id, producer_epoch,
    base_sequence, transactional} and, for bad input, `codec` ("gzip": the records
    compressed), `attributes` (the bits as given), `raw_records` (bytes instead of the
    records), `count` (the record count claimed), `base_offset`, `timestamp_from_now_ms`,
    `magic` (written over the byte, the rest of the batch unchanged) and `crc = "wrong"`."""
    if isinstance(batch, list):
        batch = {"records": batch}
    records = [_record_of(r) for r in batch.get("records", [])]
    attributes = 0x10 if batch.get("transactional") else 0
    raw = batch.get("raw_records")
    raw = raw.encode() if isinstance(raw, str) else None
    if batch.get("codec") == "gzip":
        raw = gzip.compress(b"".join(wire.encode_record(i, 0, k, v, h) for i, (k, v, h) in enumerate(records)))
        attributes |= 1
    now_ms = int(time.time() * 1000)
    data = bytearray(wire.record_batch(
        records,
        base_timestamp=now_ms + batch.get("timestamp_from_now_ms", 0),
        attributes=batch.get("attributes", attributes),
        raw_records=raw,
        count=batch.get("count"),
        producer_id=int(batch.get("producer_id", -1)),
        producer_epoch=int(batch.get("producer_epoch", -1)),
        base_sequence=int(batch.get("base_sequence", -1)),
    ))
    if "base_offset" in batch:
        data[0:8] = struct.pack(">q", batch["base_offset"])
    if "magic" in batch:
        data[16] = batch["magic"]
    if batch.get("crc") == "wrong":
        data[wire.BATCH_CRC_AT] ^= 0xFF
    return bytes(data)


def _record_of(r):
    """(key, value, headers) of a record given as {key, value, headers: [[name, value]]}."""
    headers = [(h, _bytes(v)) for h, v in r.get("headers", [])]
    return (_bytes(r.get("key")), _bytes(r.get("value")), headers)


# ---------------------------------------------------------------------------
# Answers as plain data.


def plain(value):
    """A decoded answer as dicts, lists and scalars; record sets as their records."""
    if hasattr(value, "to_dict"):
        return {k: plain(v) for k, v in _fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if type(value).__name__ == "UUID":
        # Ids are random: compared as zero or not.
        return "<zero uuid>" if value.int == 0 else "<uuid>"
    return value


def _fields(message):
    version = getattr(message, "_version", None)
    for field in message._struct._fields:
        if version is not None and not field.for_version_q(version):
            continue
        yield field.name, getattr(message, field.name)


def records(data):
    """Record batches (magic 2, uncompressed) as [{offset, key, value, headers}], control
    batches as {control: type}."""
    if data is None:
        return None
    out = []
    r = wire.Reader(bytes(data))
    while r.remaining() >= 12:
        base = r.i64()
        length = r.i32()
        if length > r.remaining():
            out.append({"partial": True})
            break
        batch = wire.Reader(r.take(length))
        batch.i32()  # partition leader epoch
        magic = batch.i8()
        if magic != 2:
            out.append({"magic": magic})
            continue
        batch.take(4)  # crc
        attributes = batch.i16()
        batch.i32()  # last offset delta
        batch.i64()
        batch.i64()  # timestamps
        producer = (batch.i64(), batch.i16(), batch.i32())
        count = batch.i32()
        if attributes & 0x07:
            out.append({"offset": base, "compressed": attributes & 0x07, "count": count})
            continue
        for _ in range(count):
            batch_record = _record(batch)
            entry = {"offset": base + batch_record["delta"]}
            if attributes & 0x20:
                key = wire.Reader(batch_record["key"] or b"\0\0\0\0")
                key.i16()
                entry["control"] = key.i16()
            else:
                entry.update(key=batch_record["key"], value=batch_record["value"], headers=batch_record["headers"])
            entry["transactional"] = bool(attributes & 0x10)
            entry["idempotent"] = producer[0] >= 0
            out.append(entry)
    return out


def _varint(r):
    shift = result = 0
    while True:
        b = r.take(1)[0]
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1)
        shift += 7


def _varbytes(r):
    n = _varint(r)
    return None if n < 0 else r.take(n)


def _record(r):
    length = _varint(r)
    body = wire.Reader(r.take(length))
    body.i8()  # attributes
    _varint(body)  # timestamp delta
    delta = _varint(body)
    key = _varbytes(body)
    value = _varbytes(body)
    headers = [(_varbytes(body), _varbytes(body)) for _ in range(_varint(body))]
    return {"delta": delta, "key": key, "value": value, "headers": headers}


# Fields holding node ids: in a case run on three nodes, each server places replicas and
# coordinators its own way, so a node id is compared only as present (`<node>`) or not (-1).
NODE_FIELDS = ("leader_id", "node_id", "replica_nodes[]", "isr_nodes[]", "offline_replicas[]",
               "eligible_leader_replicas[]", "last_known_elr[]", "broker_id", "coordinator_id")


def without_node_ids(flat):
    """A flattened answer with every node id (>= 0) as `<node>`."""
    out = {}
    for path, value in flat.items():
        generic = _generic(path)
        if isinstance(value, int) and value >= 0 and any(
                generic == f or generic.endswith("." + f) for f in NODE_FIELDS):
            value = "<node>"
        out[path] = value
    return out


# Lists compared as sets keyed by a field (their order is not Kafka's promise): configs by
# name (`configs{retention.ms}.value`), groups by id (Kafka answers them shard by shard).
KEYED = {"configs": "name", "synonyms": "name", "groups": "group_id", "entity": "entity_type", "values": "key"}
# Lists of names whose order means nothing (a SASL handshake's mechanisms, the metrics a
# client is asked for — Kafka's come from a hash set): compared sorted.
UNORDERED = {"mechanisms", "requested_metrics"}


def flatten(value, path=""):
    """{dotted path: scalar} of plain data; list items as `name[i]` (or `name{key}`)."""
    out = {}
    if isinstance(value, dict):
        for k, v in value.items():
            key = KEYED.get(k)
            sub = f"{path}.{k}" if path else k
            if key and isinstance(v, list) and all(isinstance(i, dict) and key in i for i in v):
                for item in v:
                    out.update(flatten({f: x for f, x in item.items() if f != key}, f"{sub}{{{item[key]}}}"))
            elif k in UNORDERED and isinstance(v, list):
                out.update(flatten(sorted(v), sub))
            else:
                out.update(flatten(v, sub))
    elif isinstance(value, list):
        out[f"{path}#len"] = len(value)
        for i, v in enumerate(value):
            out.update(flatten(v, f"{path}[{i}]"))
    else:
        if isinstance(value, bytes):
            value = "b64:" + base64.b64encode(value).decode()
        out[path] = value
    return out


# ---------------------------------------------------------------------------
# Differences.


def load_differences():
    data = tomllib.loads((HERE / "differences.toml").read_text())
    return data.get("difference", [])


def applies(difference, case, api, path):
    apis = difference.get("apis", ["*"])
    if not any(fnmatch.fnmatchcase(api, a) for a in apis):
        return False
    cases = difference.get("cases", ["*"])
    if not any(fnmatch.fnmatchcase(f"{case['file']}/{case['name']}", c) for c in cases):
        return False
    generic = _generic(path)
    # `[]` in a pattern is the list marker, not fnmatch's character class.
    return any(fnmatch.fnmatchcase(generic, p.replace("[]", "[[][]]")) for p in difference["paths"])


def _generic(path):
    """`topics[2].partitions[0].error_code` → `topics[].partitions[].error_code` (keyed items
    keep their key: `configs{retention.ms}.value`)."""
    out, i = [], 0
    while i < len(path):
        if path[i] == "[":
            j = path.index("]", i)
            out.append("[]")
            i = j + 1
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def compare(case, api, kafka, broker, differences):
    """The differences between two flattened answers that no listed difference explains."""
    found = []
    for path in sorted(set(kafka) | set(broker)):
        k, b = kafka.get(path, "<absent>"), broker.get(path, "<absent>")
        if k == b:
            continue
        if any(applies(d, case, api, path) and _allowed(d, k, b) for d in differences):
            continue
        found.append(f"{path}: kafka {k!r}, broker {b!r}")
    return found


def _allowed(difference, k, b):
    """Whether a difference's `values` (if any) admit this pair: [kafka, broker] pairs."""
    pairs = difference.get("values")
    if pairs is None:
        return True
    return [k, b] in pairs


# ---------------------------------------------------------------------------
# Cases.


def load_cases():
    cases = []
    for path in sorted((HERE / "cases").glob("*.toml")):
        data = tomllib.loads(path.read_text())
        for case in data.get("case", []):
            case["file"] = path.stem
            cases.append(case)
    return cases


def substitute(value, names):
    if isinstance(value, str):
        for k, v in names.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, list):
        return [substitute(v, names) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, names) for k, v in value.items()}
    return value


def version_of(step, server, case_version, other, case_api):
    """The version a step is sent at on `server`: the case's for a step of the case's API, the
    highest both serve for another (or the step's own `version`: "min", "max", a number)."""
    api = step["api"]
    wanted = step.get("version", "case" if api == case_api else "max")
    lo = max(server.api_versions()[api][0], other.api_versions()[api][0], REQUESTS[api].min_version)
    hi = min(server.api_versions()[api][1], other.api_versions()[api][1], REQUESTS[api].max_version)
    if wanted == "case":
        return case_version
    if wanted == "max":
        return hi
    if wanted == "min":
        return lo
    return int(wanted)


def case_api(case):
    """The API a case is about: its first compared step's."""
    return next(s["api"] for s in case["steps"] if s.get("compare", True) and "api" in s)


def versions(case, kafka, broker):
    """The versions a case runs at: the lowest and highest its API has on both servers."""
    api = case_api(case)
    lo = max(kafka.api_versions()[api][0], broker.api_versions()[api][0], REQUESTS[api].min_version)
    hi = min(kafka.api_versions()[api][1], broker.api_versions()[api][1], REQUESTS[api].max_version)
    lo = max(lo, case.get("min_version", lo))
    hi = min(hi, case.get("max_version", hi))
    return sorted({lo, hi}) if lo <= hi else []


def run_step(server, step, version, names):
    """Send `step` to `server`; its answer as plain data. A step's `save` ({name: field}) keeps
    fields of the answer under names later requests use (`{name}`), per server."""
    if "wait_leaders" in step:
        return wait_leaders(server, substitute(step["wait_leaders"], names))
    if "sleep_ms" in step:
        time.sleep(step["sleep_ms"] / 1000)
        return None
    if "scram" in step:
        return scram_login(server, step["scram"], substitute(step["user"], names), step["password"])
    if "to" in step:
        server = route(server, step, names)
    deadline = time.time() + RETRY_S
    while True:
        request = substitute(step.get("request", {}), {**names, **server.saved})
        request = with_topic_ids(server, step["api"], version, request)
        answer = server.call(step["api"], version, request)
        if isinstance(answer, str):
            return {"closed": answer}
        code = getattr(answer, "error_code", 0)
        not_yet = code in step.get("retry_while", NOT_YET) or not _holds(answer, step.get("until", {}))
        if not not_yet or time.time() > deadline:
            break
        time.sleep(0.2)
    data = plain(answer)
    _decode_records(data)
    for var, field in step.get("save", {}).items():
        server.saved[var] = str(_field(answer, field))
    return data


def _holds(answer, until):
    """Whether `answer` says what a step's `until` expects (`{path: value}`; a path ending in
    `#len` is a list's length): a step is sent again until it does, for a change a server
    applies a moment after it answered (Kafka's brokers serve client quotas from a copy of the
    metadata that follows the controller's)."""
    for path, want in until.items():
        try:
            if path.endswith("#len"):
                got = len(_field(answer, path[:-len("#len")]))
            else:
                got = _field(answer, path)
        except (AttributeError, IndexError, TypeError, ValueError):
            return False
        if got != want:
            return False
    return True


def _field(answer, path):
    """A field of an answer by its dotted path (`topics.0.topic_id`: list items by index)."""
    value = answer
    for part in path.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)
    return value


# Requests that name topics by id from a version on (KIP-516): (list field, name field, first
# version). A case gives names; at those versions each is sent as the id the server has for it
# (each server has its own ids), unless the step gives the id itself.
BY_ID = {"Fetch": ("topics", "topic", 13), "Produce": ("topic_data", "name", 13)}
# The id sent for a name the server has no topic of (the same on both servers).
UNKNOWN_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "stillwater-differential-unknown-topic"))


def with_topic_ids(server, api, version, request):
    """`request` with its topics named by id where `api` at `version` names them so."""
    by_id = BY_ID.get(api)
    if by_id is None or version < by_id[2]:
        return request
    field, name_field, _ = by_id
    topics = []
    for t in request.get(field, []):
        if "topic_id" not in t:
            t = {**t, "topic_id": topic_id(server, t.get(name_field)) or UNKNOWN_ID}
        topics.append(t)
    return {**request, field: topics}


def topic_id(server, name):
    """The id `server` has now for topic `name` (None if it has no such topic)."""
    answer = server.call("Metadata", 12, {"topics": [{"name": name}], "allow_auto_topic_creation": False})
    if isinstance(answer, str) or not answer.topics or answer.topics[0].error_code != 0:
        return None
    return str(answer.topics[0].topic_id)


def scram_login(server, mechanism, user, password):
    """A SCRAM login (RFC 5802) over SaslHandshake v1 and SaslAuthenticate v1: the error code
    of each answer, or where the connection was closed. (The exchanged messages hold random
    nonces and salts: not compared.)"""
    digest = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}[mechanism]
    out = {}
    handshake = server.call("SaslHandshake", 1, {"mechanism": mechanism})
    if isinstance(handshake, str):
        return {"handshake": handshake}
    out["handshake"] = handshake.error_code
    if handshake.error_code:
        return out
    first_bare = f"n={user},r={secrets.token_urlsafe(18)}"
    first = server.call("SaslAuthenticate", 1, {"auth_bytes": ("n,," + first_bare).encode()})
    if isinstance(first, str):
        out["first"] = first
        return out
    out["first"] = first.error_code
    if first.error_code:
        return out
    server_first = bytes(first.auth_bytes).decode()
    fields = dict(part.split("=", 1) for part in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    stored_key = hashlib.new(digest, client_key).digest()
    without_proof = f"c=biws,r={fields['r']}"
    message = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored_key, message, digest).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    final = server.call("SaslAuthenticate", 1, {"auth_bytes": f"{without_proof},p={proof}".encode()})
    out["final"] = final if isinstance(final, str) else final.error_code
    return out


def _decode_records(data):
    if isinstance(data, dict):
        for k, v in list(data.items()):
            if k == "records" and isinstance(v, (bytes, type(None))):
                data[k] = records(v)
            else:
                _decode_records(v)
    elif isinstance(data, list):
        for v in data:
            _decode_records(v)


def wait_leaders(server, topic):
    deadline = time.time() + LEADER_WAIT_S
    while time.time() < deadline:
        answer = server.call("Metadata", 1, {"topics": [{"name": topic}], "allow_auto_topic_creation": False})
        if not isinstance(answer, str):
            ts = answer.topics
            if ts and ts[0].error_code == 0 and all(p.leader_id >= 0 and p.error_code == 0 for p in ts[0].partitions):
                # Kafka's metadata may name a leader a moment before that broker serves the
                # partition: wait until each leader answers its partition's offsets too.
                nodes = {b.node_id: (b.host, b.port) for b in answer.brokers}
                if all(_serves(server.via(nodes[p.leader_id]), topic, p.partition_index)
                       for p in ts[0].partitions if p.leader_id in nodes):
                    return None
        time.sleep(0.1)
    raise AssertionError(f"{server.name}: {topic} has no leader after {LEADER_WAIT_S} s")


def _serves(server, topic, partition):
    offsets = server.call("ListOffsets", 1, {"replica_id": -1, "topics": [
        {"name": topic, "partitions": [{"partition_index": partition, "timestamp": -1}]}]})
    return not isinstance(offsets, str) and all(p.error_code == 0 for t in offsets.topics for p in t.partitions)


# Where a step's `to` sends it in a cluster: "leader" or "follower" of `{topic}`'s partition
# `partition` (default 0) or a node that is "not-replica" of it, the "coordinator" of `key`
# (default `{group}`; `key_type` 1: a transactional id) or a node that is "not-coordinator".
ROUTES = ("leader", "follower", "not-replica", "coordinator", "not-coordinator")


def route(server, step, names):
    """The server seen through the node a step's `to` names."""
    to = step["to"]
    if to not in ROUTES:
        raise ValueError(f"unknown `to`: {to!r} (one of {ROUTES})")
    deadline = time.time() + RETRY_S
    while True:
        target = _node_for(server, step, names, to)
        if target is not None:
            return server.via(target)
        if time.time() > deadline:
            raise AssertionError(f"{server.name}: no node is the {to} for {step}")
        time.sleep(0.2)


def _node_for(server, step, names, to):
    topic = substitute("{topic}", names)
    by_partition = to in ("leader", "follower", "not-replica")
    md = server.call("Metadata", 1, {"topics": [{"name": topic}] if by_partition else [],
                                      "allow_auto_topic_creation": False})
    if isinstance(md, str):
        return None
    nodes = {b.node_id: (b.host, b.port) for b in md.brokers}
    if by_partition:
        partition = step.get("partition", 0)
        found = [p for t in md.topics for p in t.partitions if p.partition_index == partition]
        if not found or found[0].leader_id < 0:
            return None
        p = found[0]
        if to == "leader":
            return nodes.get(p.leader_id)
        if to == "not-replica":
            others = sorted(n for n in nodes if n not in p.replica_nodes)
            return nodes[others[0]] if others else None
        followers = [r for r in p.replica_nodes if r != p.leader_id and r in nodes]
        return nodes[followers[0]] if followers else None
    key = substitute(step.get("key", "{group}"), names)
    found = server.call("FindCoordinator", 1, {"key": key, "key_type": step.get("key_type", 0)})
    if isinstance(found, str) or found.error_code != 0:
        return None
    if to == "coordinator":
        return nodes.get(found.node_id)
    others = sorted(n for n in nodes if n != found.node_id)
    return nodes[others[0]] if others else None


def run_case(case, index, kafka, broker, differences):
    """Run `case` at each of its versions on both servers; the unexplained differences."""
    problems = []
    for version in versions(case, kafka, broker):
        names = {
            k: f"d{RUN}-{case['file']}-{index}-v{version}-{k}" for k in ("topic", "group", "txn", "name")
        }
        for server in (kafka, broker):
            server.connect()
        for n, step in enumerate(case["steps"]):
            answers = {}
            for server, other in ((kafka, broker), (broker, kafka)):
                v = version_of(step, server, version, other, case_api(case)) if "api" in step else None
                answers[server.name] = run_step(server, step, v, names)
            if not step.get("compare", True) or ("api" not in step and "scram" not in step):
                continue
            k = flatten(answers["kafka"])
            b = flatten(answers["broker"])
            if case.get("nodes", 1) > 1:
                k, b = without_node_ids(k), without_node_ids(b)
            if "only" in step:
                # The step compares these fields alone (patterns of generic paths).
                def kept(flat):
                    return {p: v for p, v in flat.items()
                            if any(fnmatch.fnmatchcase(_generic(p), o.replace("[]", "[[][]]")) for o in step["only"])}
                k, b = kept(k), kept(b)
            api = step.get("api", "SaslAuthenticate")
            for d in compare(case, api, k, b, differences):
                problems.append(f"v{version} step {n} ({api}): {d}")
    return problems
