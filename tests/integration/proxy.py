"""A userspace TCP proxy to put on a link between brokers (netem is not available on these
kernels): it forwards bytes both ways until it is cut, and then closes what it carries and
every connection made to it, until it is healed — a network partition of that link.

One proxy stands in front of a broker's inter-broker listener and carries every link dialled
to that broker. With `hello=True` it reads who dials from the first bytes of the connection
(the transport's hello: `u32 length`, `u32 crc`, kind, magic, `u16 version`, then the sender's
`u64` id), so a cut can strike only the links some brokers dial."""

import socket
import threading

# The transport's hello, up to and including the sender's id.
HELLO_TO_SENDER = 4 + 4 + 1 + 4 + 2 + 8


class Proxy:
    """Listens on 127.0.0.1:`port` and forwards each connection to 127.0.0.1:`target`."""

    def __init__(self, port, target, hello=False):
        self.port, self.target, self.hello = port, target, hello
        self.cut_off = threading.Event()
        self.cut_from = set()  # dialling brokers whose links are cut (with `hello`)
        self.lock = threading.Lock()
        self.open = []  # (dialler or None, socket) of the connections carried now
        self.stopped = threading.Event()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, dialers=None):
        """Partition the link: what it carries is closed, new connections are closed at once.
        `dialers` (broker ids; needs `hello`) cuts only the links those brokers dial."""
        with self.lock:
            if dialers is None:
                self.cut_off.set()
            else:
                assert self.hello, "a proxy tells who dials only when it reads the hello"
                self.cut_from |= set(dialers)
            victims = [s for d, s in self.open if self._is_cut(d)]
            self.open = [(d, s) for d, s in self.open if not self._is_cut(d)]
        for s in victims:
            _close(s)

    def heal(self):
        with self.lock:
            self.cut_off.clear()
            self.cut_from.clear()

    def stop(self):
        self.stopped.set()
        self.cut()
        _close(self.listener)

    def _is_cut(self, dialer):
        return self.cut_off.is_set() or dialer in self.cut_from

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._join, args=(conn,), daemon=True).start()

    def _join(self, conn):
        first, dialer = b"", None
        if self.hello:
            try:
                conn.settimeout(5)
                first = _read_exact(conn, HELLO_TO_SENDER)
                conn.settimeout(None)
            except OSError:
                _close(conn)
                return
            dialer = int.from_bytes(first[-8:], "big")
        if self._is_cut(dialer):
            _close(conn)
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            upstream.settimeout(None)
            upstream.sendall(first)
        except OSError:
            _close(conn)
            return
        with self.lock:
            if self._is_cut(dialer):
                cut = True
            else:
                cut = False
                self.open += [(dialer, conn), (dialer, upstream)]
        if cut:
            _close(conn)
            _close(upstream)
            return
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=self._pump, args=(a, b, dialer), daemon=True).start()

    def _pump(self, src, dst, dialer):
        try:
            while not self._is_cut(dialer):
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        _close(src)
        _close(dst)


def _read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise OSError("closed before the hello")
        buf += chunk
    return buf


def _close(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
