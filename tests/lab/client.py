"""Traffic generator for the lab's LAN client: many fresh flows, a histogram of who answered.

Run inside a namespace, for example:

    ip netns exec np12ab-c python tests/lab/client.py --url http://203.0.113.10/ --count 200 \\
        --source 192.168.10.100 192.168.10.101 --sources-round-robin --json

Every flow is a new socket (new source port, so a new conntrack entry), optionally bound to a
source address (`--source`) and to a device (`--device`, SO_BINDTODEVICE). Modes:

- `--url URL` (default): one HTTP/1.0 GET per TCP connection; the answer is the response body.
- `--udp ADDR:PORT`: one datagram per socket; the answer is the reply datagram.
- `--dns ADDR:PORT`: one query per socket (`--qname`, `--qtype`, default TXT whoami.lab.test.);
  the answer is the first value of the answer section, or the rcode name when there is none.

With several sources, flow i uses source i % n under `--sources-round-robin`, otherwise the
flows are split into n consecutive blocks, one per source.

Output (`--json`): {"<answer>": count, ..., "errors": n, "error_kinds": {"timeout": n, ...},
"order": [first 1000 answers in order, null for a failed flow], "by_source": {src: {...}}}.
The keys "errors", "error_kinds", "order" and "by_source" are reserved; every other key is an answer.
Exit status 0 even when flows fail (the histogram says so), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import ipaddress
import json
import os
import socket
import sys
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dnswire  # noqa: E402
from servers import parse_endpoint  # noqa: E402  (one parser for both ends)

RESERVED_KEYS = ("errors", "error_kinds", "order", "by_source")
ORDER_LIMIT = 1000
MAX_REPLY_BYTES = 65536


class FlowError(Exception):
    """A flow that got no usable answer; the message is the error kind used in the histogram."""


def family_of(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def open_socket(family: int, kind: int, source: str | None, device: str | None, timeout: float):
    sock = socket.socket(family, kind)
    try:
        sock.settimeout(timeout)
        if device:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        if source:
            sock.bind((source, 0))
        return sock
    except OSError:
        sock.close()
        raise


def classify(error: OSError) -> str:
    if isinstance(error, socket.timeout):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, ConnectionResetError):
        return "reset"
    return error.strerror.lower().replace(" ", "_") if error.strerror else type(error).__name__


def http_flow(url: urllib.parse.SplitResult, source, device, timeout) -> str:
    host = url.hostname
    port = url.port or 80
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    request = f"GET {path} HTTP/1.0\r\nHost: {url.netloc}\r\nConnection: close\r\n\r\n".encode()
    with open_socket(family_of(host), socket.SOCK_STREAM, source, device, timeout) as sock:
        sock.connect((host, port))
        sock.sendall(request)
        chunks = []
        received = 0
        while received < MAX_REPLY_BYTES:
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
            received += len(chunk)
    reply = b"".join(chunks)
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/"):
        raise FlowError("bad_reply")
    if status_line[1] != b"200":
        raise FlowError("http_" + status_line[1].decode(errors="replace"))
    return body.decode(errors="replace").strip()


def udp_flow(endpoint, source, device, timeout) -> str:
    with open_socket(family_of(endpoint[0]), socket.SOCK_DGRAM, source, device, timeout) as sock:
        sock.sendto(b"who am i\n", endpoint)
        return sock.recv(MAX_REPLY_BYTES).decode(errors="replace").strip()


def dns_flow(endpoint, qname, qtype, source, device, timeout) -> str:
    query_id = int.from_bytes(os.urandom(2), "big")
    with open_socket(family_of(endpoint[0]), socket.SOCK_DGRAM, source, device, timeout) as sock:
        sock.sendto(dnswire.build_query(query_id, qname, qtype), endpoint)
        while True:  # a late answer to an earlier socket cannot reach this one: fresh port per flow
            try:
                rcode, values = dnswire.parse_response(sock.recv(MAX_REPLY_BYTES), query_id)
                break
            except (ValueError, IndexError):
                continue
    if values:
        return values[0]
    return {dnswire.RCODE_NOERROR: "NOERROR", dnswire.RCODE_NXDOMAIN: "NXDOMAIN"}.get(rcode, f"rcode_{rcode}")


def source_for(index: int, count: int, sources: list, round_robin: bool):
    if not sources:
        return None
    if round_robin:
        return sources[index % len(sources)]
    return sources[index * len(sources) // count]


def run_flows(flow, count: int, sources: list, round_robin: bool, parallel: int) -> dict:
    answers: collections.Counter = collections.Counter()
    error_kinds: collections.Counter = collections.Counter()
    by_source: dict = collections.defaultdict(collections.Counter)
    order = []

    def one(index):
        source = source_for(index, count, sources, round_robin)
        try:
            return source, flow(source), None
        except FlowError as error:
            return source, None, str(error)
        except OSError as error:
            return source, None, classify(error)

    if parallel > 1:
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            results = list(pool.map(one, range(count)))  # map keeps flow order
    else:
        results = (one(index) for index in range(count))
    for source, answer, error_kind in results:
        key = answer if answer is not None else "errors"
        if answer is not None:
            answers[answer] += 1
        else:
            error_kinds[error_kind] += 1
        if source is not None:
            by_source[source][key] += 1
        if len(order) < ORDER_LIMIT:
            order.append(answer)

    histogram = dict(sorted(answers.items()))
    histogram["errors"] = sum(error_kinds.values())
    histogram["error_kinds"] = dict(sorted(error_kinds.items()))
    histogram["order"] = order
    if sources:
        histogram["by_source"] = {source: dict(sorted(counts.items())) for source, counts in by_source.items()}
    return histogram


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--url", default="http://203.0.113.10/")
    mode.add_argument("--udp", type=parse_endpoint, metavar="ADDR:PORT")
    mode.add_argument("--dns", type=parse_endpoint, metavar="ADDR:PORT")
    parser.add_argument("--qname", default="whoami.lab.test.")
    parser.add_argument("--qtype", default="TXT", choices=sorted(dnswire.TYPE_BY_NAME))
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--source", nargs="+", default=[], metavar="ADDR")
    parser.add_argument("--sources-round-robin", action="store_true")
    parser.add_argument("--device", help="SO_BINDTODEVICE for every flow")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per flow")
    parser.add_argument("--parallel", type=int, default=1, help="flows in flight at once")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.count < 1 or args.parallel < 1 or args.timeout <= 0:
        parser.error("--count and --parallel must be at least 1, --timeout positive")
    for source in args.source:
        try:
            ipaddress.ip_address(source)
        except ValueError:
            parser.error(f"--source {source!r} is not an IP address")

    if args.udp:
        def flow(source):
            return udp_flow(args.udp, source, args.device, args.timeout)
    elif args.dns:
        qtype = dnswire.TYPE_BY_NAME[args.qtype]
        qname = args.qname if args.qname.endswith(".") else args.qname + "."

        def flow(source):
            return dns_flow(args.dns, qname.lower(), qtype, source, args.device, args.timeout)
    else:
        url = urllib.parse.urlsplit(args.url)
        if url.scheme != "http" or not url.hostname:
            parser.error(f"--url must be http://ADDRESS[:PORT]/PATH, got {args.url!r}")

        def flow(source):
            return http_flow(url, source, args.device, args.timeout)

    histogram = run_flows(flow, args.count, args.source, args.sources_round_robin, args.parallel)
    if args.json:
        print(json.dumps(histogram))
    else:
        for key, value in histogram.items():
            if key not in ("order", "by_source"):
                print(f"{key}\t{value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
