"""TLS-RPT reports sent (RFC 8460 §5; DESIGN §3 [tls_rpt]) against a DNS lab, an HTTPS
report receiver and SMTP next hops.

nsd serves the zones (dnssec_lab.py), a Python HTTPS server on 127.0.0.50 takes POSTs for
reports.report.test, and fake SMTP next hops listen on 127.0.0.51-53 at one [dns] mx_port.

  policy domain  _smtp._tls record                                 what `postern tlsrpt send` does
  report.test    https://…/tlsrpt, https://…/fail, mailto:tlsrpt@inbox.test
                                                                   POST (200), POST (500: retried later),
                                                                   mail queued and delivered to inbox.test
  broken.test    mailto:tlsrpt@nowhere.test (no connector routes it)  mail queued, then dropped: logged,
                                                                   never reported (not to double_bounce_recipient)
  plain.test     none                                              no report, said so
inbox.test is DNSSEC-signed with a TLSA record its MX does not match: ordinary mail to it
is deferred (tlsa-invalid), the report mail goes through (TLS-Required: No) and its session
is not counted. The reports are checked against RFC 8460's schema, the POSTed one and the
mailed one are the same report, and the next period starts where the sent one ended.
"""

import base64
import email
import email.policy
import gzip
import http.client
import http.server
import json
import os
import re
import ssl
import threading
import time
import unittest

from delivery_fakes import DELIVERY_TIMEOUT, hops_on_one_port, queued_recipient, relay_connector, require_delivery, submit
from dnssec_lab import DnssecLab, Zone
from postern_testlib import PosternTestCase, config_text, pki, run, postern_bin, wait_until
from test_mta_sts import check_rfc8460_report

REPORT_HOST = "127.0.0.50"
HOPS = {
    "127.0.0.51": "server",      # report.test
    "127.0.0.52": "server",      # inbox.test (its TLSA record does not match)
    "127.0.0.53": "server",      # broken.test, plain.test
}
DOMAINS = ["report.test", "broken.test", "plain.test", "inbox.test"]


class ReportHandler(http.server.BaseHTTPRequestHandler):
    posts = []
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.lock:
            self.posts.append((self.path, self.headers.get("Content-Type"), self.headers.get("Host"), body))
        status = 500 if self.path == "/fail" else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def start_report_host():
    p = pki()
    if not os.path.exists(p.path("reporthost.pem")):
        p.issue("reporthost", "reports.report.test", ["DNS:reports.report.test"])
    server = http.server.ThreadingHTTPServer((REPORT_HOST, 0), ReportHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(p.path("reporthost.pem"), p.path("reporthost.key"))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def zones(https_port):
    base = f"https://reports.report.test:{https_port}"
    rua = f'"v=TLSRPTv1; rua={base}/tlsrpt,{base}/fail,mailto:tlsrpt@inbox.test"'
    return [
        Zone("report.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.51", f"reports IN A {REPORT_HOST}",
                             f"_smtp._tls IN TXT {rua}"], kind="unsigned"),
        Zone("broken.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.53",
                             '_smtp._tls IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@nowhere.test"'], kind="unsigned"),
        Zone("plain.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.53"], kind="unsigned"),
        Zone("inbox.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.52", f"_25._tcp.mx IN TLSA 3 1 1 {'ab' * 32}"]),
    ]


class TlsRpt(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        cls.report_host = start_report_host()
        cls.port, cls.hops = hops_on_one_port(HOPS)
        try:
            cls.lab = DnssecLab(zones(cls.report_host.server_address[1]))
        except BaseException:
            cls.report_host.shutdown()
            for h in cls.hops.values():
                h.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.report_host.shutdown()
        cls.report_host.server_close()
        for h in cls.hops.values():
            h.stop()
        cls.lab.stop()

    def setUp(self):
        super().setUp()
        with ReportHandler.lock:
            ReportHandler.posts.clear()

    def start_sender(self, tls_rpt, metrics=False, **kw):
        extra = '\n[metrics]\nlisten = "127.0.0.1:0"\n' if metrics else ""
        extra += (f'\n[dns]\nunbound_config = "{self.lab.unbound_config()}"\nmx_port = {self.port}\n'
                  "\n[tls_rpt]\n" + "".join(f'{k} = {json.dumps(v)}\n' for k, v in tls_rpt.items()))
        sender = self.start(config_text(
            [relay_connector()],
            server={"hostname": "sender.postern.test"},
            queue={"retry": ["10m"], "double_bounce_recipient": "postmaster@plain.test"},
            send_connectors=[{"name": "by-mx", "address_spaces": DOMAINS}],
            extra=extra), **kw)
        require_delivery(self, sender)
        return sender

    def received_by(self, address, rcpt):
        return [r for r, _ in self.hops[address].rcpts() if r == rcpt]

    def test_reports_go_by_https_and_by_mail_and_never_loop(self):
        sender = self.start_sender({"enabled": True, "organization_name": "Postern Test Org",
                                    "contact_info": "tlsrpt-contact@sender.postern.test"}, metrics=True)
        for rcpt, hop in (("user@report.test", "127.0.0.51"), ("user@broken.test", "127.0.0.53"),
                          ("user@plain.test", "127.0.0.53")):
            submit(sender, rcpt, f"to {rcpt}")
            wait_until(lambda: self.received_by(hop, rcpt), DELIVERY_TIMEOUT, what=f"{rcpt} delivered")
        before = json.loads(sender.cli("tlsrpt", "show", "-c", sender.config_file, "--json").stdout)

        sent = sender.cli("tlsrpt", "send", "-c", sender.config_file, "--json", timeout=200)
        self.assertEqual(sent.returncode, 0, sent.stderr)
        outcomes = {(o["domain"], o["destination"]): o for o in json.loads(sent.stdout)["outcomes"]}
        https_base = f"https://reports.report.test:{self.report_host.server_address[1]}"
        self.assertTrue(outcomes[("report.test", https_base + "/tlsrpt")]["ok"], outcomes)
        failed = outcomes[("report.test", https_base + "/fail")]
        self.assertFalse(failed["ok"])
        self.assertIn("HTTP 500", failed["detail"])
        self.assertIn("tried again in 300s", failed["detail"])
        self.assertRegex(outcomes[("report.test", "mailto:tlsrpt@inbox.test")]["detail"], r"^queued as \S+")
        self.assertTrue(outcomes[("broken.test", "mailto:tlsrpt@nowhere.test")]["ok"])
        self.assertEqual(outcomes[("plain.test", "")]["detail"], "no TLS-RPT record")

        # The failed POST waits in the outbox (0600) for its retry, across restarts.
        outbox = os.path.join(sender.data_dir, "tlsrpt-outbox.json")
        with open(outbox) as f:
            [waiting] = json.load(f)["posts"]
        self.assertEqual((waiting["uri"], waiting["retries_done"]), (https_base + "/fail", 1))
        self.assertGreater(waiting["due"], time.time() + 200)
        self.assertEqual(os.stat(outbox).st_mode & 0o777, 0o600)

        # The POST: application/tlsrpt+gzip, an RFC 8460 report of the sessions counted.
        with ReportHandler.lock:
            posts = [p for p in ReportHandler.posts if p[0] == "/tlsrpt"]
        self.assertEqual(len(posts), 1)
        _, content_type, host, body = posts[0]
        self.assertEqual(content_type, "application/tlsrpt+gzip")
        self.assertEqual(host, "reports.report.test")
        posted = json.loads(gzip.decompress(body))
        check_rfc8460_report(self, posted)
        self.assertEqual(posted["organization-name"], "Postern Test Org")
        self.assertEqual(posted["contact-info"], "tlsrpt-contact@sender.postern.test")
        self.assertRegex(posted["report-id"], r"^\d{8}T\d{6}Z\.report\.test\.[0-9a-f]{16}@sender\.postern\.test$")
        self.assertEqual(posted["date-range"]["start-datetime"], before["start"])
        [policy] = posted["policies"]
        self.assertEqual(policy["policy"]["policy-domain"], "report.test")
        self.assertEqual(policy["policy"]["policy-type"], "no-policy-found")
        self.assertEqual(policy["summary"]["total-successful-session-count"], 1)

        # The mail: through the queue to inbox.test despite its TLSA mismatch (TLS-Required: No).
        wait_until(lambda: [m for m in self.hops["127.0.0.52"].received() if posted["report-id"] in m[3]],
                   DELIVERY_TIMEOUT, what="the mailed report at inbox.test")
        [(_, mail_from, _, data)] = [m for m in self.hops["127.0.0.52"].received() if posted["report-id"] in m[3]]
        self.assertRegex(mail_from, r"^MAIL FROM:<>")
        msg = email.message_from_string(data, policy=email.policy.default)
        self.assertEqual(str(msg["Subject"]), f"Report Domain: report.test Submitter: sender.postern.test "
                                              f"Report-ID: <{posted['report-id']}>")
        self.assertEqual(msg["TLS-Report-Domain"], "report.test")
        self.assertEqual(msg["TLS-Report-Submitter"], "sender.postern.test")
        self.assertEqual(msg["TLS-Required"], "No")
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "tlsrpt")
        [attachment] = [p for p in msg.iter_parts() if p.get_content_type() == "application/tlsrpt+gzip"]
        self.assertRegex(attachment.get_filename(),
                         r"^sender\.postern\.test!report\.test!\d+!\d+![0-9a-f]+\.json\.gz$")
        self.assertEqual(json.loads(gzip.decompress(attachment.get_content())), posted)
        wait_until(lambda: [r for r in sender.protocol_log("smtp-send").rows()
                            if r["event"] == "*" and "DANE not enforced" in r["data"]],
                   DELIVERY_TIMEOUT, what="the report's verdict line: DANE not enforced (TLS-Required: No)")

        # The report nobody routes: dropped and logged, never reported to anyone.
        wait_until(lambda: "it was a TLS-RPT report, whose failures are never reported; dropped"
                   in sender.stderr_text(), DELIVERY_TIMEOUT, what="the undeliverable report logged")
        wait_until(lambda: not sender.queue_list(strict=True), DELIVERY_TIMEOUT, what="an empty queue")
        self.assertEqual(self.received_by("127.0.0.53", "postmaster@plain.test"), [])

        # The metrics count what went where: one POST sent, one failed, two messages queued.
        m = sender.ready["metrics"]
        c = http.client.HTTPConnection(m["address"], m["port"], timeout=10)
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode()
        c.close()
        for method, outcome, n in (("https", "sent", 1), ("https", "failed", 1), ("mail", "sent", 2), ("mail", "failed", 0)):
            self.assertIn(f'postern_tlsrpt_reports_total{{method="{method}",outcome="{outcome}"}} {n}\n', body)

        # Nothing counted twice: the next period starts where the sent one ended, and the
        # report's own session (to inbox.test) is not in it.
        after = json.loads(sender.cli("tlsrpt", "show", "-c", sender.config_file, "--json").stdout)
        self.assertEqual(after["start"], posted["date-range"]["end-datetime"])
        self.assertEqual([r["policies"][0]["policy"]["policy-domain"] for r in after["reports"]], [])
        again = sender.cli("tlsrpt", "send", "-c", sender.config_file, timeout=200)
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertIn("no outbound TLS sessions were counted", again.stdout)
        with ReportHandler.lock:
            self.assertEqual(len([p for p in ReportHandler.posts if p[0] == "/tlsrpt"]), 1)

    def test_a_period_from_an_earlier_day_is_sent_at_start(self):
        # The server was down over midnight: the counts it kept are yesterday's.
        started = int(time.time()) - 86400
        kept = {"version": 1, "start": started, "domains": {"report.test": [
            {"key": "no-policy-found", "type": "no-policy-found", "strings": [], "mx_patterns": [],
             "successes": 7, "failures": [{"result": "certificate-expired", "mx": "mx.report.test",
                                           "ip": "127.0.0.51", "count": 2}]}]}}

        def seed(base):
            with open(os.path.join(base, "data", "tlsrpt.json"), "w") as f:
                json.dump(kept, f)

        self.start_sender({"enabled": True, "contact_info": "tlsrpt-contact@sender.postern.test"}, before_start=seed)

        def yesterdays():
            with ReportHandler.lock:
                posts = [json.loads(gzip.decompress(b)) for path, _, _, b in ReportHandler.posts if path == "/tlsrpt"]
            return [r for r in posts if r["policies"][0]["summary"]["total-successful-session-count"] == 7]
        [report] = wait_until(yesterdays, DELIVERY_TIMEOUT, what="yesterday's report posted at start")
        check_rfc8460_report(self, report)
        self.assertEqual(report["date-range"]["start-datetime"],
                         time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)))
        self.assertEqual(report["organization-name"], "sender.postern.test")   # the default: [server] hostname
        [failure] = report["policies"][0]["failure-details"]
        self.assertEqual((failure["result-type"], failure["failed-session-count"]), ("certificate-expired", 2))

    def test_what_waits_in_the_outbox_goes_out_after_a_restart(self):
        report = {"organization-name": "x", "date-range": {"start-datetime": "2026-12-01T00:00:00Z",
                                                          "end-datetime": "2026-12-02T00:00:00Z"},
                  "contact-info": "c", "report-id": "waiting@sender.postern.test", "policies": []}
        uri = f"https://reports.report.test:{self.report_host.server_address[1]}/fail"
        # A closed period whose reports were not handed on (the server stopped mid-way).
        closed = {"version": 1, "start": 1764633600, "end": 1764720000, "domains": {"report.test": [
            {"key": "no-policy-found", "type": "no-policy-found", "strings": [], "mx_patterns": [],
             "successes": 11, "failures": []}]}}
        waiting = {"version": 1, "posts": [{"domain": "report.test", "uri": uri, "retries_done": 4, "due": 0,
                                            "report": gzip.compress(json.dumps(report).encode()).hex()}],
                   "periods": [closed]}

        def seed(base):
            with open(os.path.join(base, "data", "tlsrpt-outbox.json"), "w") as f:
                json.dump(waiting, f)

        sender = self.start_sender({"enabled": True, "contact_info": "c"}, before_start=seed)

        def posted():
            with ReportHandler.lock:
                return [json.loads(gzip.decompress(b)) for path, _, _, b in ReportHandler.posts if path == "/fail"]
        wait_until(lambda: report in posted(), DELIVERY_TIMEOUT, what="the waiting POST made")
        outbox = os.path.join(sender.data_dir, "tlsrpt-outbox.json")

        def retries_done():
            with open(outbox) as f:
                return 5 in [p["retries_done"] for p in json.load(f)["posts"]] or None
        wait_until(retries_done, DELIVERY_TIMEOUT, what="the outbox updated after the failed retry")
        # The closed period: its report posted (and mailed), the period gone from the outbox.
        def resumed():
            with ReportHandler.lock:
                bodies = [json.loads(gzip.decompress(b)) for path, _, _, b in ReportHandler.posts if path == "/tlsrpt"]
            return [r for r in bodies if r["policies"][0]["summary"]["total-successful-session-count"] == 11]
        [again] = wait_until(resumed, DELIVERY_TIMEOUT, what="the closed period's report posted after the restart")
        check_rfc8460_report(self, again)
        self.assertEqual(again["date-range"], {"start-datetime": "2025-12-02T00:00:00Z",
                                               "end-datetime": "2025-12-03T00:00:00Z"})

        def period_gone():
            with open(outbox) as f:
                return json.load(f)["periods"] == [] or None
        wait_until(period_gone, DELIVERY_TIMEOUT, what="the period handed on and gone from the outbox")
        # It failed again: the last wait of the schedule (12 h) follows; after that it is given up.
        wait_until(lambda: [l for l in sender.stderr_text().splitlines() if "tried again in 43200s" in l],
                   DELIVERY_TIMEOUT, what="the failed retry logged with the last wait")

    def test_ordinary_mail_to_the_tlsa_mismatch_is_held_back(self):
        sender = self.start_sender({"enabled": False})
        submit(sender, "user@inbox.test", "ordinary")
        r = wait_until(lambda: (x := queued_recipient(sender, "user@inbox.test")) and x.get("attempts", 0) > 0 and x,
                       DELIVERY_TIMEOUT, what="an attempt to inbox.test")
        self.assertEqual(r["state"], "pending")
        self.assertEqual(r.get("last_tls"), "tlsa-invalid")
        refused = sender.cli("tlsrpt", "send", "-c", sender.config_file)
        self.assertEqual(refused.returncode, 1)
        self.assertIn("[tls_rpt] enabled is false", refused.stderr)

    def test_enabled_needs_contact_info(self):
        directory = self.lab.path("config-check")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, "postern.toml")
        with open(path, "w") as f:
            f.write(config_text(server={"data_dir": directory}) + "\n[tls_rpt]\nenabled = true\n")
        checked = run([postern_bin(), "config", "check", "-c", path], check=False)
        self.assertNotEqual(checked.returncode, 0)
        self.assertRegex(checked.stdout + checked.stderr, r"tls_rpt\.contact_info.*needs contact_info")


if __name__ == "__main__":
    unittest.main()
