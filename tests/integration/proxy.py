"""A userspace TCP proxy to put on a link between brokers (netem is not available on these
kernels): it forwards bytes both ways until it is cut, and then closes what it carries and
every connection made to it, until it is healed — a network partition of that link."""

import socket
import threading


class Proxy:
    """Listens on 127.0.0.1:`port` and forwards each connection to 127.0.0.1:`target`."""

    def __init__(self, port, target):
        self.port, self.target = port, target
        self.cut_off = threading.Event()
        self.lock = threading.Lock()
        self.open = []  # the sockets of the connections carried now
        self.stopped = threading.Event()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self):
        """Partition the link: what it carries is closed, new connections are closed at once."""
        self.cut_off.set()
        with self.lock:
            socks, self.open = self.open, []
        for s in socks:
            _close(s)

    def heal(self):
        self.cut_off.clear()

    def stop(self):
        self.stopped.set()
        self.cut()
        _close(self.listener)

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.cut_off.is_set():
                _close(conn)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
                upstream.settimeout(None)
            except OSError:
                _close(conn)
                continue
            with self.lock:
                self.open += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while not self.cut_off.is_set():
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        _close(src)
        _close(dst)


def _close(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
