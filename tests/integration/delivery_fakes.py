"""Helpers for the send-side integration tests (test_delivery_*.py).

They extend the fake next hop of test_delivery.py (FakeNextHop) instead of writing a new
one:
  NextHop(mode, host, port)   the same fake on any loopback address and a chosen port
                              (MX tests: every MX host listens on one mx_port), plus
                              mode "tls1.0": STARTTLS offered, but only TLS 1.0 spoken
  GatedNextHop(host, port)    a plaintext fake that receives DATA but answers the final
                              dot only once the test opens its gate (a slow next hop)
  submit(server, rcpt, ...)   one message into Postern over SMTP; returns its Message-ID
  message_id(data)            the Message-ID of a message a fake received
  Unbound(zones)              a private `unbound -d` with local zones on a free port
  hops_on_one_port(specs)     NextHops on 127.0.0.x sharing one port (the [dns] mx_port)
and re-exports test_delivery's send-log readers.
"""

import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import warnings

from postern_testlib import SmtpConn, keep_files, message, pki, wait_until
from test_delivery import (DELIVERY_TIMEOUT, FakeNextHop, relay_connector,  # noqa: F401
                           require_delivery, send_log_text, wait_send_log)


class NextHop(FakeNextHop):
    """FakeNextHop bound to host:port (port 0 = one from the OS).

    Modes are FakeNextHop's ("no-starttls", "454", or a PKI certificate name: "server",
    "wrong", "selfsigned") and "tls1.0": the server certificate, but TLS 1.0 only (a
    Domino 8.5 style peer; OpenSSL 3 allows it only at security level 0, DESIGN §7).
    """

    def __init__(self, mode, host="127.0.0.1", port=0):
        # FakeNextHop.__init__ binds 127.0.0.1:0; the rest is the same.
        self.mode = mode
        self.host = host
        self.messages = []
        self.mail_commands = 0
        self.connections = 0
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _context(self):
        if self.mode != "tls1.0":
            return super()._context()
        p = pki()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # deprecated is the point
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1
        ctx.load_cert_chain(p.path("server.pem"), p.path("server.key"))
        return ctx

    def rcpts(self):
        """Every RCPT address received in an accepted message, with its TLS version."""
        out = []
        for tls, _, rcpts, _ in self.received():
            for r in rcpts:
                m = re.search(r"<([^>]*)>", r)
                out.append((m.group(1) if m else r, tls))
        return out

    def message_ids(self):
        return [message_id(data) for _, _, _, data in self.received()]


class _GatedSocket:
    """Wraps a plaintext connection: the reply to the end of DATA waits for the gate."""

    def __init__(self, conn, hop):
        self._conn = conn
        self._hop = hop

    def sendall(self, data):
        if data.startswith(b"250 2.0.0 OK queued"):
            with self._hop.lock:
                self._hop.waiting += 1
            self._hop.gate.wait()
        return self._conn.sendall(data)

    def __getattr__(self, name):
        return getattr(self._conn, name)


class GatedNextHop(NextHop):
    """A plaintext next hop (no STARTTLS) that records each message when its final dot
    arrives but sends the 250 only after open_gate(). `waiting` counts transactions held
    at the final dot. Messages it recorded were received, not acknowledged."""

    def __init__(self, host="127.0.0.1", port=0):
        self.gate = threading.Event()
        self.waiting = 0
        super().__init__("no-starttls", host, port)

    def open_gate(self):
        self.gate.set()

    def stop(self):
        self.gate.set()
        super().stop()

    def _session(self, conn):
        super()._session(_GatedSocket(conn, self))


def message_id(data):
    m = re.search(r"^Message-ID:\s*(<[^>]+>)", data, re.M | re.I)
    return m.group(1) if m else None


def submit(server, rcpt, subject="test", sender="alice@client.test", size=200, mail_parameters=""):
    """Hands one message for `rcpt` to `server` over plain SMTP; returns its Message-ID.
    `mail_parameters` go on the MAIL command (" RET=FULL")."""
    text = message(size, subject=subject, sender=sender, rcpt=rcpt)
    c = SmtpConn("127.0.0.1", server.port())
    try:
        c.hello()
        c.expect("250", f"MAIL FROM:<{sender}>{mail_parameters}")
        c.expect("250", f"RCPT TO:<{rcpt}>")
        c.expect("354", "DATA")
        c.send_raw(text + ".\r\n")
        c.expect("250")
        c.expect("221", "QUIT")
    finally:
        c.close()
    return message_id(text)


def send_log_rows(server):
    """The send protocol log as dict rows (postern_testlib.ProtocolLog)."""
    return server.protocol_log("smtp-send").rows()


def connector_lines(server, connector_name):
    """The `data` field of every send-log row of one send connector."""
    return [r["data"] for r in send_log_rows(server) if r["connector-id"] == connector_name]


class Unbound:
    """`unbound -d -c CONF` on 127.0.0.1:<free UDP+TCP port> serving `zones` (unbound.conf
    local-zone/local-data lines), as tests/unit/route/resolver_unbound_test.cpp does.
    Ready once it logs "start of service" (bounded wait); stop() ends only this process."""

    def __init__(self, zones, startup_timeout=15):
        self.dir = tempfile.mkdtemp(prefix="postern-unbound-")
        self.port = free_udp_tcp_port()
        self.log_path = os.path.join(self.dir, "unbound.log")
        conf = os.path.join(self.dir, "unbound.conf")
        with open(conf, "w") as f:
            f.write("server:\n"
                    "  interface: 127.0.0.1\n"
                    f"  port: {self.port}\n"
                    "  do-ip6: no\n"
                    '  username: ""\n'
                    '  chroot: ""\n'
                    f'  directory: "{self.dir}"\n'
                    f'  pidfile: "{os.path.join(self.dir, "unbound.pid")}"\n'
                    "  use-syslog: no\n"
                    '  logfile: ""\n'
                    "  verbosity: 1\n"
                    "  num-threads: 1\n"
                    + zones)
        self._keep = keep_files()
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(["unbound", "-d", "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log)
        log.close()

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"unbound exited ({self.proc.returncode}):\n{self.log_text()}")
            return "start of service" in self.log_text()
        try:
            wait_until(ready, startup_timeout, what="unbound's start of service")
        except BaseException:
            self.stop()
            raise

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if not self._keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def free_udp_tcp_port():
    """A port free on 127.0.0.1 for both UDP and TCP right now."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            try:
                t.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free loopback port for UDP and TCP")


def hops_on_one_port(specs):
    """NextHops sharing one OS-chosen port on different loopback addresses:
    specs = {address: mode}. Returns (port, {address: NextHop})."""
    hops = {}
    port = 0
    try:
        for address, mode in specs.items():
            hops[address] = NextHop(mode, address, port)
            port = hops[address].port
    except OSError:
        for h in hops.values():
            h.stop()
        raise
    return port, hops


def queued_recipient(server, address):
    """The recipient entry of `postern queue list --json` for `address` (DESIGN §4:
    address, state, attempts, next_attempt, last_reply), None when it is not queued."""
    messages = server.queue_list(strict=True)
    for m in messages:
        for r in m.get("recipients", []):
            if r.get("address") == address:
                return r
    return None


def wait_sessions_logged(server, connector_names, timeout=DELIVERY_TIMEOUT):
    """Waits until each named send connector has a finished session (its '-' line) in the
    send log. A fake records a message before Postern has read the 250 and logged the
    rest of the session, so checks of later lines wait for this first."""
    names = set(connector_names)

    def done():
        ended = {r["connector-id"] for r in send_log_rows(server) if r["event"] == "-"}
        return names <= ended
    wait_until(done, timeout, what=f"finished sessions of {sorted(names)} in the send log")
