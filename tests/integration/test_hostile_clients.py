"""Hostile clients cannot take the service from everyone else (DESIGN §3 [server] limits,
max_junk_commands, allow_untrusted_routing; §5 replies; §6 protocol-log cap).

Floods come from other loopback addresses (127.0.0.2, 127.0.0.3) so that the legitimate
client on 127.0.0.1 is a different source. Figures a user would check (descriptors and
memory of the server under the flood, seconds a stop took) are printed to stderr."""

import os
import re
import resource
import selectors
import shutil
import signal
import socket
import ssl
import sys
import time
import unittest

from postern_testlib import (ACCEPTED_DOMAIN, PosternTestCase, ProtocolLog, SmtpConn, config_text,
                             connector, message, wait_until)


def raise_own_descriptor_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def server_descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def server_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_flood(source, port, count):
    """`count` connections from `source`, kept open; returns the sockets."""
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((source, 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        socks.append(s)
    return socks


def first_replies(socks, timeout=20):
    """The first line each socket received, or "" when it was closed without one (bounded)."""
    first = {}
    pending = {}
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        pending[s] = b""
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                pending[s] += data
            if b"\n" in pending[s] or not data:
                first[s] = pending.pop(s).split(b"\r\n", 1)[0].decode(errors="replace")
                sel.unregister(s)
    sel.close()
    for s in pending:
        first[s] = None            # still open, nothing said
    return first


class ConnectionFlood(PosternTestCase):
    FLOOD = 2000

    def test_floods_from_one_address_and_from_strangers_leave_a_legitimate_client_served(self):
        raise_own_descriptor_limit(2 * self.FLOOD + 200)
        # 127.0.0.1 and 127.0.0.3 match the connector; 127.0.0.2 matches none.
        server = self.start(config_text(
            [connector(remote_ip_ranges=["127.0.0.1/32", "127.0.0.3/32"])]))
        pid = server.pid
        port = server.port()
        idle_fds, idle_rss = server_descriptors(pid), server_rss_kib(pid)

        strangers = open_flood("127.0.0.2", port, self.FLOOD)
        flooders = open_flood("127.0.0.3", port, self.FLOOD)
        try:
            # While every flood connection is still held open by its client:
            fds, rss = server_descriptors(pid), server_rss_kib(pid)
            c = SmtpConn("127.0.0.1", port)
            self.addCleanup(c.close)
            c.hello()
            c.expect("250", "MAIL FROM:<alice@client.test>")
            c.expect("250", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
            c.expect("354", "DATA")
            c.send_raw(message(100) + ".\r\n")
            c.expect("250 2.0.0")
            c.expect("221", "QUIT")

            stranger_first = first_replies(strangers, timeout=20)
            flooder_first = first_replies(flooders, timeout=20)
        finally:
            for s in strangers + flooders:
                s.close()
        sys.stderr.write(
            f"\n[flood] {2 * self.FLOOD} connections held open by clients: server descriptors "
            f"{idle_fds} idle -> {fds}; RSS {idle_rss} KiB idle -> {rss} KiB\n")

        def count(replies, prefix):
            return sum(1 for r in replies.values() if r is not None and r.startswith(prefix))

        # max_connections_per_source = 50 (default): 50 sessions each, the rest 421 4.7.0.
        self.assertEqual(count(stranger_first, "554 5.7.1"), 50, stranger_first.values())
        self.assertEqual(count(stranger_first, "421 4.7.0"), self.FLOOD - 50)
        # the connector's own max_inbound_connections_per_source (20) applies inside
        self.assertEqual(count(flooder_first, "220 "), 20)
        self.assertEqual(count(flooder_first, "421 4.7.0"), self.FLOOD - 20)
        # refused connections cost no session: descriptors stay near 50 + 20 + idle
        self.assertLess(fds, idle_fds + 50 + 20 + 50, f"{fds} descriptors under the flood")
        self.assertLess(rss - idle_rss, 64 * 1024, f"RSS grew by {rss - idle_rss} KiB")
        # and left no protocol-log session behind (a session logs its connect line '+')
        rows = server.protocol_log().rows()
        sessions = {r["session-id"] for r in rows if r["event"] == "+"}
        self.assertLessEqual(len(sessions), 50 + 20 + 1)
        self.assertIn("refused with 421 4.7.0: max_connections_per_source (50) reached", server.stderr_text())

    def test_strangers_are_closed_after_ten_seconds(self):
        server = self.start(config_text([connector(remote_ip_ranges=["127.0.0.1/32"])]))
        s = socket.socket()
        self.addCleanup(s.close)
        s.bind(("127.0.0.2", 0))
        s.settimeout(30)
        s.connect(("127.0.0.1", server.port()))
        start = time.monotonic()
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        waited = time.monotonic() - start
        self.assertTrue(data.startswith(b"554 5.7.1"), data)
        self.assertIn(b"421 4.4.2", data)
        self.assertGreater(waited, 9)
        self.assertLess(waited, 15)


class DescriptorExhaustion(PosternTestCase):

    def test_out_of_descriptors_the_accept_loop_backs_off_logs_once_and_recovers(self):
        if not shutil.which("prlimit"):
            self.fail("prlimit (util-linux) is missing")
        raise_own_descriptor_limit(1000)
        # The server may have 80 descriptors at most (hard limit): well below what its
        # limits need, which it says at start.
        server = self.start(config_text([connector(remote_ip_ranges=["127.0.0.0/8"])]),
                            wrapper=["prlimit", "--nofile=80:80", "--"])
        self.assertIn("descriptor limit 80 is below what the configured limits need", server.stderr_text())
        port = server.port()
        # 40 sources x 3 connections: within every per-source limit, beyond the descriptors
        held = []
        for source in range(2, 42):
            held += open_flood(f"127.0.1.{source}", port, 3)
        wait_until(lambda: "Too many open files" in server.stderr_text(), 10, what="the server to run out")
        time.sleep(1.5)            # the flood holds on (load, not synchronisation): ~15 more retries
        for s in held:
            s.close()
        # once descriptors are free again, a client is served
        def served():
            try:
                c = SmtpConn("127.0.0.1", port, timeout=5)
            except OSError:
                return False
            try:
                code, _ = c.reply()
                if code != 220:
                    return False
                c.expect("221", "QUIT")
                return True
            except (OSError, ConnectionError):
                return False
            finally:
                c.close()
        wait_until(served, 60, interval=0.5, what="a client to be served after the descriptors came back")
        log = server.stderr_text()
        episodes = log.count("failed: Too many open files")
        recoveries = log.count("works again after")
        # once per episode (it fails again every 100 ms meanwhile), not once per attempt
        self.assertGreaterEqual(episodes, 1, log)
        self.assertGreaterEqual(recoveries, 1, log)
        self.assertLessEqual(episodes, recoveries + 1, log)
        failed_attempts = sum(int(m) for m in re.findall(r"works again after (\d+) failed attempts", log))
        self.assertGreater(failed_attempts, 5 * episodes, log)
        sys.stderr.write(f"\n[descriptors] {episodes} episode(s) logged for {failed_attempts} failed accepts\n")


class JunkCommands(PosternTestCase):

    def test_noop_flood_is_cut_off_and_cannot_grow_the_protocol_log(self):
        server = self.start(config_text([connector()]))
        c = self.smtp(server)
        c.hello()
        # far more than the limit, in one go: the server must stop reading and close
        try:
            c.send_raw("NOOP\r\n" * 20000)
        except OSError:
            pass                   # the server may close while we are still writing
        replies = c.read_until_closed(timeout=20)
        codes = [code for code, _ in replies]
        self.assertEqual(codes.count(250), 100, codes[:5])
        self.assertEqual(replies[100][1][-1],
                         "421 4.7.0 mx.postern.test Too many commands without a message, closing connection")
        self.assertEqual(len(replies), 101)
        rows = server.protocol_log().wait_session_closed(c.local_port)
        # banner, EHLO, 100 x (NOOP, 250, "improper pipelining"), the 421: about 310 lines
        # for 20,000 NOOPs sent
        self.assertLess(len(rows), 400, "protocol log lines for one junk session")
        self.assertTrue(any("max_junk_commands 100" in r["data"] for r in rows))

    def test_rset_between_many_messages_is_never_cut_off(self):
        server = self.start(config_text([connector(max_junk_commands=3)]))
        c = self.smtp(server)
        c.hello()
        for i in range(10):
            c.expect("250", "RSET")
            c.expect("250", "NOOP")
            c.expect("250", "MAIL FROM:<alice@client.test>")
            c.expect("250", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
            c.expect("354", "DATA")
            c.send_raw(message(10, subject=f"m{i}") + ".\r\n")
            c.expect("250 2.0.0")
        c.expect("221", "QUIT")


class SenderSpecifiedRouting(PosternTestCase):

    def test_routing_local_parts_are_refused_without_relay_permission(self):
        server = self.start(config_text([connector()]))
        c = self.smtp(server)
        c.hello()
        c.expect("250", "MAIL FROM:<alice@client.test>")
        for rcpt in [f"user%elsewhere.test@{ACCEPTED_DOMAIN}",
                     f'"user@elsewhere.test"@{ACCEPTED_DOMAIN}',
                     f"elsewhere.test!user@{ACCEPTED_DOMAIN}"]:
            lines = c.expect("550 5.7.1", f"RCPT TO:<{rcpt}>")
        c.expect("250", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")

    def test_allow_untrusted_routing_accepts_them(self):
        server = self.start(config_text([connector(allow_untrusted_routing=True)]))
        c = self.smtp(server)
        c.hello()
        c.expect("250", "MAIL FROM:<alice@client.test>")
        c.expect("250", f"RCPT TO:<user%elsewhere.test@{ACCEPTED_DOMAIN}>")


class StopWithStuckSessions(PosternTestCase):
    GRACE = 3

    def test_stop_is_bounded_by_shutdown_timeout_whatever_the_sessions_do(self):
        server = self.start(config_text(
            [connector(max_junk_commands=10_000_000),
             connector("smtps", tls="implicit")],
            server={"shutdown_timeout": f"{self.GRACE}s"}))
        port, smtps_port = server.port("inbound"), server.port("smtps")

        # 1. an implicit-TLS client that never sends its ClientHello
        handshake = socket.create_connection(("127.0.0.1", smtps_port))
        self.addCleanup(handshake.close)
        # 2. a client that sends commands but never reads the replies: the server's write blocks
        deaf = socket.socket()
        self.addCleanup(deaf.close)
        deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        deaf.connect(("127.0.0.1", port))
        deaf.setblocking(False)
        flood = b"EHLO deaf.client.test\r\n" + b"HELP\r\n" * 400000
        sent = 0
        deadline = time.monotonic() + 10
        while sent < len(flood) and time.monotonic() < deadline:
            try:
                sent += deaf.send(flood[sent:sent + 65536])
            except BlockingIOError:
                break              # the server stopped reading: its write to us is blocked
        # 3. a session in the middle of DATA
        data = self.smtp(server, "inbound", timeout=30)
        data.hello()
        data.expect("250", "MAIL FROM:<alice@client.test>")
        data.expect("250", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
        data.expect("354", "DATA")
        data.send_raw("Subject: half\r\n\r\nthe first half of a message\r\n")
        # 4. an idle session after EHLO
        idle = self.smtp(server, "inbound", timeout=30)
        idle.hello()

        # the server has seen each of them (bounded)
        wait_until(lambda: len(server.protocol_log().sessions()) >= 4, 10, what="four sessions")
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        status = server.proc.wait(timeout=self.GRACE + 30)
        took = time.monotonic() - start
        sys.stderr.write(f"\n[stop] with stuck sessions (handshake, blocked write, DATA, idle): "
                         f"{took:.2f} s, shutdown_timeout {self.GRACE} s\n")
        self.assertEqual(status, 0, server.stderr_text())
        self.assertLess(took, self.GRACE + 5)

        idle_replies = idle.read_until_closed(timeout=5)
        self.assertTrue(idle_replies and idle_replies[0][1][-1].startswith("421 4.3.2"), idle_replies)
        data_replies = data.read_until_closed(timeout=5)
        self.assertTrue(data_replies and data_replies[-1][1][-1].startswith("421 4.3.2"), data_replies)
        # nothing half-received was queued
        queued = server.queue_list(strict=True)
        self.assertEqual(queued, [], queued)


if __name__ == "__main__":
    unittest.main()
