"""A real UDP socket that records the statsd packets the hooks send, for tests."""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass

LINE = re.compile(r"^(?P<name>[a-z_.]+)(?P<tags>(,[A-Za-z_]+=[A-Za-z0-9_.-]+)*):(?P<value>-?[0-9.e+]+)\|(?P<type>ms|c|g)$")


@dataclass(frozen=True)
class Line:
    name: str
    tags: dict[str, str]
    value: float
    type: str


def parse_line(text: str) -> Line:
    """Parse one statsd line as the hooks write it; raise if it is not well-formed."""
    match = LINE.match(text)
    if match is None:
        raise AssertionError(f"malformed statsd line: {text!r}")
    tags = dict(pair.split("=", 1) for pair in match["tags"].split(",")[1:])
    return Line(match["name"], tags, float(match["value"]), match["type"])


class UDPCapture:
    """Listen on 127.0.0.1 and keep every datagram."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.05)
        self.port = self._socket.getsockname()[1]
        self._packets: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._socket.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._packets.append(data.decode("ascii"))

    def packets(self, settle: float = 0.3) -> list[str]:
        """The packets received so far, after waiting until none arrived for ``settle`` s."""
        count = -1
        while True:
            with self._lock:
                if len(self._packets) == count:
                    return list(self._packets)
                count = len(self._packets)
            time.sleep(settle)

    def lines(self) -> list[Line]:
        return [parse_line(line) for packet in self.packets() for line in packet.split("\n")]

    def clear(self) -> None:
        with self._lock:
            self._packets.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._socket.close()
