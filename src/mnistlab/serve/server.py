"""How `serve` runs the app on uvicorn: a request head bounded as it arrives, quiet logs, and
freed memory handed back to the system."""

MAX_HEAD = 64 * 1024  # bytes of a request line and headers; past them a 431, and closed
MAX_HEADERS = 100
# Seconds a request head may take from its first byte (or from the connection, for the first
# request); past them a 408, and closed: a client that sends a head slowly, or half of one and
# then nothing, would otherwise hold its connection, and the server's memory for it, for ever.
HEAD_SECONDS = 10.0


def http_protocol():
    """uvicorn's httptools protocol with its request head bounded: httptools keeps a header
    being received whole in memory, so one endless header line would grow the server without
    end. The bytes before the head is complete, and the headers, are counted as they come,
    and the time it takes is bounded."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHead(HttpToolsProtocol):
        head = 0  # bytes received since the current request began, until its head is complete
        counting = True
        clock = None  # the head's deadline, while one is being received

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._start_clock()

        def connection_lost(self, exc) -> None:
            self._stop_clock()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.counting:  # (a piece may also hold the start of the body: parsed first)
                self.head += len(data)
                self._start_clock()
            super().data_received(data)
            if self.counting and self.head > MAX_HEAD:  # the head still incomplete
                self._refuse()

        def on_header(self, name: bytes, value: bytes) -> None:
            if len(self.headers) >= MAX_HEADERS:
                return self._refuse()
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self.counting = False
            self._stop_clock()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self.counting, self.head = True, 0

        def _start_clock(self) -> None:
            if self.clock is None:
                self.clock = self.loop.call_later(HEAD_SECONDS, self._too_slow)

        def _stop_clock(self) -> None:
            if self.clock is not None:
                self.clock.cancel()
                self.clock = None

        def _too_slow(self) -> None:
            self.clock = None
            if self.counting and self.head:  # half a head: say so
                self._refuse(b"408 Request Timeout")
            elif self.counting and not self.transport.is_closing():  # nothing sent at all
                self.transport.close()

        def _refuse(self, status: bytes = b"431 Request Header Fields Too Large") -> None:
            self._stop_clock()
            if not self.transport.is_closing():
                self.transport.write(
                    b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
                self.transport.close()

    return BoundedHead


def server_options() -> dict:
    """How `serve` runs the app on uvicorn: the bounded head, quiet logs."""
    return {"http": http_protocol(), "log_level": "warning"}


def return_freed_memory() -> bool:
    """Make the C allocator hand large freed blocks back to the system (glibc; elsewhere
    nothing is done, and False returned). A decoded 16-megapixel image and its float copies
    are tens of MB each; glibc raises its threshold for mapping such blocks as they are freed,
    so after a storm of large images the next ones land in the heap, which keeps its size: the
    server stayed 350 MB larger after 20 large uploads. With the threshold fixed at 1 MB, every
    large block is mapped and returned when freed. Called by `serve`, once, in its process."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, 1 << 20))  # M_MMAP_THRESHOLD = -3
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
