"""Just enough of the DNS wire format for the lab's server and traffic generator.

Standard library only, so the scripts that use it start fast inside a namespace. Names are
handled in lower case with a trailing dot ("whoami.lab.test."); only uncompressed question
names are parsed, which is what every stub resolver sends.
"""

import ipaddress
import struct

TYPE_A = 1
TYPE_TXT = 16
TYPE_AAAA = 28
TYPE_BY_NAME = {"A": TYPE_A, "TXT": TYPE_TXT, "AAAA": TYPE_AAAA}

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_NXDOMAIN = 3

_HEADER = struct.Struct("!HHHHHH")
_QUESTION_TAIL = struct.Struct("!HH")
_ANSWER_FIXED = struct.Struct("!HHIH")
_NAME_POINTER_TO_QUESTION = b"\xc0\x0c"


def encode_name(name: str) -> bytes:
    labels = [label for label in name.rstrip(".").split(".") if label]
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in labels) + b"\0"


def decode_name(data: bytes, offset: int) -> tuple[str, int]:
    """Return (name, offset after the name). Raises ValueError on compression or truncation."""
    labels = []
    while True:
        length = data[offset]
        if length == 0:
            return ".".join(labels).lower() + ".", offset + 1
        if length & 0xC0:
            raise ValueError("compressed names are not expected in a question")
        labels.append(data[offset + 1:offset + 1 + length].decode("ascii"))
        offset += 1 + length


def build_query(query_id: int, name: str, qtype: int) -> bytes:
    recursion_desired = 0x0100
    header = _HEADER.pack(query_id, recursion_desired, 1, 0, 0, 0)
    return header + encode_name(name) + _QUESTION_TAIL.pack(qtype, 1)


def parse_query(data: bytes) -> tuple[int, int, str, int, bytes]:
    """Return (id, flags, qname, qtype, raw question section)."""
    query_id, flags, qdcount, _, _, _ = _HEADER.unpack_from(data)
    if qdcount != 1:
        raise ValueError(f"expected one question, got {qdcount}")
    name, end = decode_name(data, _HEADER.size)
    qtype, _qclass = _QUESTION_TAIL.unpack_from(data, end)
    return query_id, flags, name, qtype, data[_HEADER.size:end + _QUESTION_TAIL.size]


def encode_rdata(qtype: int, value: str) -> bytes:
    if qtype == TYPE_A:
        return ipaddress.IPv4Address(value).packed
    if qtype == TYPE_AAAA:
        return ipaddress.IPv6Address(value).packed
    if qtype == TYPE_TXT:
        text = value.encode("ascii")
        return bytes([len(text)]) + text
    raise ValueError(f"unsupported record type {qtype}")


def build_response(query_id: int, query_flags: int, question: bytes, rcode: int,
                   answers: list[tuple[int, str]]) -> bytes:
    """answers: (type, value) pairs for the question's name; TTL 0 so nothing caches them."""
    authoritative_response = 0x8400
    flags = authoritative_response | (query_flags & 0x0100) | rcode
    body = b""
    for qtype, value in answers:
        rdata = encode_rdata(qtype, value)
        body += _NAME_POINTER_TO_QUESTION + _ANSWER_FIXED.pack(qtype, 1, 0, len(rdata)) + rdata
    return _HEADER.pack(query_id, flags, 1, len(answers), 0, 0) + question + body


def parse_response(data: bytes, expected_id: int) -> tuple[int, list[str]]:
    """Return (rcode, answer values as text). Raises ValueError if it is not our answer."""
    response_id, flags, qdcount, ancount, _, _ = _HEADER.unpack_from(data)
    if response_id != expected_id or not flags & 0x8000:
        raise ValueError("not a response to our query")
    offset = _HEADER.size
    for _ in range(qdcount):
        offset = _skip_name(data, offset) + _QUESTION_TAIL.size
    values = []
    for _ in range(ancount):
        offset = _skip_name(data, offset)
        rtype, _, _, rdlength = _ANSWER_FIXED.unpack_from(data, offset)
        offset += _ANSWER_FIXED.size
        rdata = data[offset:offset + rdlength]
        offset += rdlength
        if rtype == TYPE_A:
            values.append(str(ipaddress.IPv4Address(rdata)))
        elif rtype == TYPE_AAAA:
            values.append(str(ipaddress.IPv6Address(rdata)))
        elif rtype == TYPE_TXT:
            values.append(rdata[1:1 + rdata[0]].decode("ascii"))
    return flags & 0x000F, values


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0:
            return offset + 2
        offset += 1 + length
