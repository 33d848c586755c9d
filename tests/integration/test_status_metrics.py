"""`postern status` and `[metrics] listen` against a running server (DESIGN §3 [metrics],
§4 status).

- status while running: exit 0; text names every connector with its bound address and
  live sessions, the queue counts and the key ring's certificates; --json has version,
  pid, uptime_seconds, connectors (name, addresses, sessions), queue (messages, deferred,
  held) and certificates (label, not_after). An open SMTP session shows as one session of
  its connector; a held message shows in the counts.
- status once the server has stopped: one line saying so, exit 3.
- GET /metrics: 200, text format 0.0.4, accepted by `promtool check metrics`, with the
  families the documentation lists; the counters move with real traffic (a message
  received, a STARTTLS session, a failed handshake; a delivery over verified STARTTLS to
  a next hop, and one refused for good). Any other method: 405 with Allow: GET; another
  path: 404.
"""

import http.client
import json
import re
import socket
import subprocess
import unittest

from delivery_fakes import NextHop, submit
from postern_testlib import (ACCEPTED_DOMAIN, SERVER_NAME, PosternTestCase, SmtpConn, config_text, connector,
                             postern_bin, require_tool, run, wait_until)

FAMILIES = [
    "postern_messages_received_total",
    "postern_messages_delivered_total",
    "postern_messages_deferred_total",
    "postern_messages_bounced_total",
    "postern_queue_messages",
    "postern_sessions_total",
    "postern_tls_verdicts_total",
    "postern_tls_results_total",
    "postern_tlsrpt_reports_total",
    "postern_certificate_expiry_timestamp_seconds",
]


class StatusAndMetrics(PosternTestCase):

    def setUp(self):
        super().setUp()
        self.server = self.start(config_text(
            [connector(name="inbound", tls="starttls"),
             connector(name="second", bind=["127.0.0.1:0"], tls="none")],
            extra='\n[metrics]\nlisten = "127.0.0.1:0"\n'))
        m = self.server.ready["metrics"]
        self.metrics_at = (m["address"], m["port"])

    def postern(self, *args):
        return run([postern_bin(), *args], check=False)

    def status(self):
        p = self.postern("status", "-c", self.server.config_file, "--json")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return json.loads(p.stdout)

    def get(self, path="/metrics", method="GET", body=None):
        c = http.client.HTTPConnection(*self.metrics_at, timeout=10)
        try:
            c.request(method, path, body=body)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read().decode()
        finally:
            c.close()

    def scrape(self):
        status, headers, body = self.get()
        self.assertEqual(status, 200)
        return body

    @staticmethod
    def value(body, name, **labels):
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        pattern = "^" + re.escape(name) + (r"\{" + re.escape(want) + r"\}" if labels else "") + r" (\S+)$"
        m = re.search(pattern, body, re.M)
        return float(m.group(1)) if m else None

    def send_one(self):
        submit(self.server, f"bob@{ACCEPTED_DOMAIN}", size=100)

    # -- status -------------------------------------------------------------------------

    def test_status_while_running_and_after_stop(self):
        s = self.status()
        for key in ("version", "pid", "uptime_seconds", "connectors", "queue", "certificates"):
            self.assertIn(key, s)
        self.assertEqual(s["pid"], self.server.pid)
        names = [c["name"] for c in s["connectors"]]
        self.assertEqual(names, ["inbound", "second"])
        inbound = s["connectors"][0]
        self.assertEqual(inbound["addresses"], [f"127.0.0.1:{self.server.port('inbound')}"])
        self.assertEqual(inbound["sessions"], 0)
        self.assertEqual(s["queue"], {"messages": 0, "deferred": 0, "held": 0, "store": "ok"})
        labels = {c["label"]: c["not_after"] for c in s["certificates"]}
        self.assertIn("mx", labels)
        self.assertRegex(labels["mx"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

        # A session held open counts for its connector; a held message for the queue.
        self.send_one()
        queued = wait_until(lambda: self.server.queue_list(), 30, what="the message in the queue")
        self.assertEqual(self.postern("queue", "-c", self.server.config_file, "hold", queued[0]["id"]).returncode, 0)
        open_session = SmtpConn("127.0.0.1", self.server.port("inbound"))
        self.addCleanup(open_session.close)
        open_session.hello()
        s = self.status()
        self.assertEqual(s["connectors"][0]["sessions"], 1)
        self.assertEqual(s["connectors"][1]["sessions"], 0)
        self.assertEqual(s["queue"]["messages"], 1)
        self.assertEqual(s["queue"]["held"], 1)

        text = self.postern("status", "-c", self.server.config_file)
        self.assertEqual(text.returncode, 0, text.stderr)
        self.assertRegex(text.stdout, rf"postern \S+ running, pid {self.server.pid}, up \d+s")
        self.assertRegex(text.stdout, rf"(?m)^  inbound\s+starttls\s+127\.0\.0\.1:{self.server.port('inbound')}\s+1 "
                                      r"session\(s\)$")
        self.assertRegex(text.stdout, r"(?m)^queue: 1 message\(s\), 0 deferred, 1 held; store ok$")
        self.assertRegex(text.stdout, r"(?m)^since start: 1 received; 0 delivered, \d+ deferred, 0 bounced")
        self.assertEqual(s["counters"]["received"], 1)
        self.assertRegex(text.stdout, r"(?m)^  mx\s+expires \d{4}-")
        open_session.expect("221", "QUIT")

        self.server.stop()
        p = self.postern("status", "-c", self.server.config_file)
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"^postern is not running \(nothing answers on .*control\.sock\)\n$")

    # -- metrics ------------------------------------------------------------------------

    def test_scrape_passes_promtool_and_has_every_family(self):
        require_tool("promtool")
        body = self.scrape()
        for family in FAMILIES:
            self.assertRegex(body, rf"(?m)^# TYPE {family} (counter|gauge)$")
        p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIsNotNone(self.value(body, "postern_certificate_expiry_timestamp_seconds", label="mx"))
        status, headers, _ = self.get()
        self.assertEqual(headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")

    def test_counters_follow_traffic(self):
        before = self.scrape()
        received = self.value(before, "postern_messages_received_total")
        self.send_one()
        # A STARTTLS session that completes, and a handshake that fails.
        c = SmtpConn("127.0.0.1", self.server.port("inbound"))
        c.hello()
        c.starttls(self.pki.client_context(verify=False))
        c.expect("221", "QUIT")
        c.close()
        raw = socket.create_connection(("127.0.0.1", self.server.port("inbound")), timeout=10)
        raw.recv(1000)
        raw.sendall(b"EHLO x\r\n")
        raw.recv(1000)
        raw.sendall(b"STARTTLS\r\n")
        raw.recv(1000)
        raw.sendall(b"this is not a ClientHello\r\n" * 4)
        raw.recv(1000)
        raw.close()

        def moved():
            body = self.scrape()
            return body if (self.value(body, "postern_sessions_total", direction="inbound", tls="none") or 0) >= 2 and \
                (self.value(body, "postern_sessions_total", direction="inbound", tls="TLSv1.3") or 0) >= 1 and \
                (self.value(body, "postern_tls_verdicts_total", direction="inbound", verdict="fail") or 0) >= 1 \
                else None
        after = wait_until(moved, 30, what="the session counters to move")
        self.assertEqual(self.value(after, "postern_messages_received_total"), received + 1)
        self.assertGreaterEqual(self.value(after, "postern_tls_verdicts_total", direction="inbound", verdict="pass"), 1)
        self.assertEqual(self.value(after, "postern_queue_messages") + 0, self.value(after, "postern_queue_messages"))

    def test_other_methods_and_paths(self):
        for method in ("POST", "PUT", "DELETE", "HEAD"):
            status, headers, _ = self.get(method=method, body=b"x=1" if method in ("POST", "PUT") else None)
            self.assertEqual(status, 405, method)
            self.assertEqual(headers.get("Allow"), "GET", method)
        status, _, _ = self.get("/")
        self.assertEqual(status, 404)
        status, _, _ = self.get("/metrics/../secret")
        self.assertEqual(status, 404)
        # Still serving after all that.
        self.assertIn("postern_messages_received_total", self.scrape())


class OutboundMetrics(PosternTestCase):

    def test_deliveries_and_outbound_sessions_are_counted(self):
        hop = NextHop("server")          # STARTTLS with the test PKI's mx.postern.test certificate
        self.addCleanup(hop.stop)
        server = self.start(config_text(
            [connector(remote_ip_ranges=["127.0.0.0/8"], accept_any_recipient=True)],
            send_connectors=[{"name": "to-partner", "address_spaces": ["partner.test"],
                              "smart_hosts": [f"127.0.0.1:{hop.port}"], "require_tls": True,
                              "tls_auth_level": "domain_validation", "tls_domain": SERVER_NAME},
                             {"name": "to-nowhere", "address_spaces": ["*"], "smart_hosts": ["127.0.0.1:9"]}],
            extra='\n[metrics]\nlisten = "127.0.0.1:0"\n'))
        m = server.ready["metrics"]
        submit(server, "bob@partner.test", "counted")

        def scrape():
            c = http.client.HTTPConnection(m["address"], m["port"], timeout=10)
            c.request("GET", "/metrics")
            body = c.getresponse().read().decode()
            c.close()
            return body

        value = StatusAndMetrics.value
        body = wait_until(lambda: (lambda b: b if value(b, "postern_messages_delivered_total") == 1 else None)(scrape()),
                          30, what="the delivery to be counted")
        self.assertEqual(len(hop.received()), 1)
        self.assertGreaterEqual(value(body, "postern_tls_verdicts_total", direction="outbound", verdict="pass"), 1)
        outbound_tls = sum(value(body, "postern_sessions_total", direction="outbound", tls=t) or 0
                           for t in ("TLSv1.2", "TLSv1.3"))
        # The session ends once its cached connection is closed (connection_cache_time).
        if outbound_tls == 0:
            body = wait_until(lambda: (lambda b: b if sum(value(b, "postern_sessions_total", direction="outbound", tls=t)
                                                          for t in ("TLSv1.2", "TLSv1.3")) >= 1 else None)(scrape()),
                              30, what="the outbound TLS session to be counted")
        self.assertEqual(value(body, "postern_messages_bounced_total"), 0)
        self.assertEqual(value(body, "postern_messages_received_total"), 1)


if __name__ == "__main__":
    unittest.main()
