"""Big messages cost neither memory nor integrity (DESIGN §7 "Bodies").

A body that outgrows 256 KB is streamed into a spool file as it arrives and delivered
from that file a block at a time. Eight clients send 20 MB at once; the server's memory is
reported (bench/run_memory_bench.py measures it against its goal); every message must be
accepted, and one is relayed to a next hop that receives it byte for byte."""

import hashlib
import os
import sys
import threading
import time
import unittest

from postern_testlib import ACCEPTED_DOMAIN, PosternTestCase, SmtpConn, config_text, connector, wait_until
from test_delivery import FakeNextHop, relay_connector

MB = 1024 * 1024


def big_message(size, subject, rcpt):
    head = (f"From: <alice@client.test>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{time.time_ns()}.{subject}@client.test>\r\n\r\n")
    # Lines that start with a dot now and then, so dot-stuffing is exercised both ways.
    lines = []
    total = len(head)
    i = 0
    while total < size:
        line = (f".{i:08d} " if i % 97 == 0 else f"{i:08d} ") + "y" * 66 + "\r\n"
        lines.append(line)
        total += len(line)
        i += 1
    return head + "".join(lines)


def on_the_wire(text):
    """The DATA form of a message: dot-stuffed, ended by CRLF.CRLF."""
    return text.replace("\r\n.", "\r\n..") + ".\r\n"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def send_big(port, text, rcpt, results, index):
    c = SmtpConn("127.0.0.1", port, timeout=120)
    try:
        c.hello()
        c.expect("250", f"MAIL FROM:<alice@client.test> SIZE={len(text)}")
        c.expect("250", f"RCPT TO:<{rcpt}>")
        c.expect("354", "DATA")
        c.send_raw(on_the_wire(text))
        results[index] = c.reply()[1][-1]
        c.cmd("QUIT")
    except Exception as e:          # reported by the assertion below
        results[index] = f"error: {e}"
    finally:
        c.close()


class BigMessages(PosternTestCase):

    def test_eight_concurrent_20_mb_messages_are_accepted_and_memory_is_reported(self):
        server = self.start(config_text([connector(max_message_size="35MB")]))
        idle_rss, _ = rss_kib(server.pid)
        text = big_message(20 * MB, "big", f"bob@{ACCEPTED_DOMAIN}")
        results = [None] * 8
        threads = [threading.Thread(target=send_big, args=(server.port(), text, f"bob@{ACCEPTED_DOMAIN}", results, i))
                   for i in range(8)]
        peak = idle_rss
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_kib(server.pid)[0])
            time.sleep(0.05)          # sampling memory, not synchronising
        for t in threads:
            t.join()
        _, hwm = rss_kib(server.pid)
        sys.stderr.write(f"\n[big] 8 x 20 MB at once: RSS idle {idle_rss} KiB, sampled peak {peak} KiB, "
                         f"VmHWM {hwm} KiB: {(hwm - idle_rss) / 1024:.1f} MB above idle\n")
        self.assertTrue(all(r and r.startswith("250 2.0.0") for r in results), results)
        queued = server.queue_list(strict=True)
        self.assertEqual(len(queued), 8)
        # the Received: header comes on top of what the client sent
        self.assertTrue(all(m["size"] > len(text) for m in queued), [m["size"] for m in queued])
        bodies = os.path.join(server.data_dir, "queue-bodies")
        self.assertEqual(len([f for f in os.listdir(bodies) if os.path.isfile(os.path.join(bodies, f))]), 8)
        self.assertEqual(os.listdir(os.path.join(bodies, "spool")), [])

    def test_a_20_mb_message_reaches_the_next_hop_byte_for_byte_and_its_file_goes(self):
        hop = FakeNextHop("no-starttls")
        self.addCleanup(hop.stop)
        server = self.start(config_text(
            [relay_connector()],
            send_connectors=[{"name": "to-hop", "address_spaces": ["big.test"],
                              "smart_hosts": [f"127.0.0.1:{hop.port}"]}]))
        text = big_message(20 * MB, "relayed", "carol@big.test")
        results = [None]
        send_big(server.port(), text, "carol@big.test", results, 0)
        self.assertTrue(results[0].startswith("250 2.0.0"), results)
        wait_until(hop.received, 120, what="the next hop to receive the message")
        _, _, _, data = hop.received()[0]
        # what the next hop got, after our Received: header, is what the client sent
        body = data[data.index("From: <alice@client.test>"):].replace("\r\n..", "\r\n.") + "\r\n"
        self.assertEqual(hashlib.sha256(body.encode()).hexdigest(), hashlib.sha256(text.encode()).hexdigest())
        bodies = os.path.join(server.data_dir, "queue-bodies")
        wait_until(lambda: server.queue_list() == [] and
                   not [f for f in os.listdir(bodies) if os.path.isfile(os.path.join(bodies, f))],
                   30, what="the message and its body file to be removed after delivery")


if __name__ == "__main__":
    unittest.main()
