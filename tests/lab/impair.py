"""Delay and loss for kernels without sch_netem: a TUN device that holds packets back.

Run inside an ISP namespace by netlab.Lab.netem() when `tc qdisc ... netem` is not available:

    ip netns exec np12ab-i1 python tests/lab/impair.py --device dly0 --delay-ms 100 --loss-pct 5

The lab routes every packet that would leave the ISP toward the router into this device
(policy routing inside the ISP namespace); this process drops `--loss-pct` percent of them and
writes the rest back into the same device after `--delay-ms`, where the kernel forwards them out
of the ISP's `up0`. The result matches `netem` on up0's egress, which is what the lab promises.
"READY" goes to stdout once the device exists; SIGTERM removes it and exits 0.
"""

import argparse
import fcntl
import heapq
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65535


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def relay(fd: int, delay_s: float, loss: float, stopping) -> None:
    held = []  # heap of (due time, sequence, packet); the sequence keeps equal times in order
    sequence = 0
    while not stopping():
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, _, packet = heapq.heappop(held)
            try:
                os.write(fd, packet)
            except OSError:
                pass  # the kernel refused one packet (device going down); netem would drop it too
        wait = min(0.2, max(0.0, held[0][0] - now)) if held else 0.2
        try:
            readable, _, _ = select.select([fd], [], [], wait)
        except InterruptedError:
            continue
        if not readable:
            continue
        while True:
            try:
                packet = os.read(fd, MAX_PACKET)
            except BlockingIOError:
                break
            if loss and random.random() < loss:
                continue
            sequence += 1
            heapq.heappush(held, (time.monotonic() + delay_s, sequence, packet))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--loss-pct", type=float, default=0.0)
    args = parser.parse_args(argv)
    if not 0 <= args.loss_pct <= 100 or args.delay_ms < 0 or len(args.device) > 15:
        parser.error("need 0 <= --loss-pct <= 100, --delay-ms >= 0 and a device name of at most 15 characters")

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    try:
        fd = open_tun(args.device)
    except OSError as error:
        print(f"impair: cannot create TUN device {args.device}: {error}", file=sys.stderr)
        return 1
    print("READY", flush=True)
    relay(fd, args.delay_ms / 1000, args.loss_pct / 100, lambda: bool(stop))
    os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
