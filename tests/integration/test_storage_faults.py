"""Failing disks never cost accepted mail or send it in a loop (DESIGN §5: 451 4.3.0 for a
failed store, 452 4.3.1 for a full one; README: exit status 75).

Faults are injected into a real `postern serve` with a preloaded library
(tests/fault/fault_shim.cpp, POSTERN_FAULT_SHIM): while its control file says "eio", every
fsync/fdatasync under the queue directory fails with EIO; "enospc" fails syncs and writes
with ENOSPC; "eio-open" also fails opening files there. Clients and next hops are real
processes on loopback. Figures a user would check are printed to stderr."""

import os
import signal
import sys
import tempfile
import threading
import time
import unittest

from delivery_fakes import NextHop, message_id, submit
from postern_testlib import (ACCEPTED_DOMAIN, REPO, PosternTestCase, SmtpConn, config_text, connector,
                             message, start_postern, wait_until, fault_shim)
from test_delivery import relay_connector

RECOVERY_BOUND = 30          # seconds: recovery is tried every 5 s


class _FaultOnDot:
    """Wraps a next hop's connection: just before the 250 for the final dot, the test's
    fault is switched on, so the next hop has the message and Postern's record fails."""

    def __init__(self, conn, hop):
        self._conn = conn
        self._hop = hop

    def sendall(self, data):
        if data.startswith(b"250 2.0.0 OK queued") and self._hop.fault_on_dot:
            self._hop.fault_on_dot()
        return self._conn.sendall(data)

    def __getattr__(self, name):
        return getattr(self._conn, name)


class FaultingNextHop(NextHop):
    def __init__(self):
        self.fault_on_dot = None
        super().__init__("no-starttls")

    def _session(self, conn):
        super()._session(_FaultOnDot(conn, self))


class StorageFaultCase(PosternTestCase):

    def setUp(self):
        super().setUp()
        self.shim = fault_shim()
        work = tempfile.mkdtemp(prefix="postern-faults-")
        self.control = os.path.join(work, "fault")
        self.data_dir = os.path.join(work, "data")
        os.makedirs(self.data_dir)
        os.chmod(self.data_dir, 0o700)

    def fault(self, what):
        with open(self.control, "w") as f:
            f.write(what + "\n")

    def injected(self):
        try:
            with open(self.control + ".log") as f:
                return f.read().splitlines()
        except OSError:
            return []

    def start_faulty(self, config):
        env = {"LD_PRELOAD": self.shim, "POSTERN_FAULT_DIR": os.path.join(self.data_dir, "queue"),
               "POSTERN_FAULT_CONTROL": self.control}
        return self.start(config, data_dir=self.data_dir, env=env)

    def kill9(self, server):
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=10)

    @staticmethod
    def send(server, sender, rcpt=f"bob@{ACCEPTED_DOMAIN}"):
        """One message; returns the reply to the final dot (its last line)."""
        c = SmtpConn("127.0.0.1", server.port(), timeout=30)
        try:
            c.hello()
            code, lines = c.cmd(f"MAIL FROM:<{sender}>")
            if code != 250:
                return lines[-1]
            c.expect("250", f"RCPT TO:<{rcpt}>")
            c.expect("354", "DATA")
            c.send_raw(message(300, subject=sender, sender=sender, rcpt=rcpt) + ".\r\n")
            return c.reply()[1][-1]
        finally:
            c.close()

    def queued_senders(self, server):
        return sorted(m["sender"] for m in server.queue_list(strict=True))


class FailedCommit(StorageFaultCase):

    def test_eio_while_committing_gets_451_then_the_store_recovers_and_nothing_acknowledged_is_lost(self):
        server = self.start_faulty(config_text([connector()]))
        self.assertTrue(self.send(server, "before@client.test").startswith("250 2.0.0"))

        self.fault("eio")
        refused = self.send(server, "during@client.test")
        self.assertTrue(refused.startswith("451 4.3.0"), refused)
        # while it recovers, MAIL itself is refused the same way
        self.assertTrue(self.send(server, "during2@client.test").startswith("451 4.3.0"))
        self.assertTrue(any(" EIO " in l for l in self.injected()), self.injected())

        self.fault("none")
        start = time.monotonic()
        wait_until(lambda: self.send(server, "after@client.test").startswith("250 2.0.0"), RECOVERY_BOUND,
                   interval=0.5, what="the store to recover and accept mail again")
        sys.stderr.write(f"\n[faults] store accepted mail again {time.monotonic() - start:.1f} s "
                         "after the fault cleared\n")
        log = server.stderr_text()
        self.assertEqual(log.count("queue store failed:"), 1, log)   # logged once, not per refusal
        self.assertIn("queue store recovered", log)

        # kill -9: everything acknowledged is there after the restart
        self.kill9(server)
        again = self.start(config_text([connector()]), data_dir=self.data_dir)
        senders = self.queued_senders(again)
        self.assertIn("before@client.test", senders)
        self.assertIn("after@client.test", senders)
        self.assertEqual(len([s for s in senders if s == "after@client.test"]), 1, senders)

    def test_a_full_disk_gets_452_not_451_and_clears_by_itself(self):
        server = self.start_faulty(config_text([connector()]))
        self.fault("enospc")
        refused = self.send(server, "full@client.test")
        self.assertTrue(refused.startswith("452 4.3.1"), refused)
        self.fault("none")
        wait_until(lambda: self.send(server, "space@client.test").startswith("250 2.0.0"), RECOVERY_BOUND,
                   interval=0.5, what="mail accepted once space is back")
        self.assertNotIn("queue store failed:", server.stderr_text())
        self.kill9(server)
        again = self.start(config_text([connector()]), data_dir=self.data_dir)
        self.assertIn("space@client.test", self.queued_senders(again))

    def test_kill_9_while_the_disk_is_full_or_failing_loses_nothing_acknowledged(self):
        for fault, refusal in (("enospc", "452 4.3.1"), ("eio", "451 4.3.0")):
            with self.subTest(fault=fault):
                self.fault("none")
                server = self.start_faulty(config_text([connector()]))
                sender = f"before-{fault}@client.test"
                self.assertTrue(self.send(server, sender).startswith("250 2.0.0"))
                self.fault(fault)
                self.assertTrue(self.send(server, f"during-{fault}@client.test").startswith(refusal))
                self.kill9(server)                     # while the fault is still on
                self.fault("none")
                again = self.start_faulty(config_text([connector()]))
                self.assertIn(sender, self.queued_senders(again))
                self.assertTrue(self.send(again, f"after-{fault}@client.test").startswith("250 2.0.0"))
                self.kill9(again)

    def test_a_store_that_cannot_be_reopened_exits_75_and_loses_nothing(self):
        server = self.start_faulty(config_text([connector()]))
        self.assertTrue(self.send(server, "kept@client.test").startswith("250 2.0.0"))
        self.fault("eio-open")
        self.assertTrue(self.send(server, "lost-disk@client.test").startswith("451 4.3.0"))
        status = server.proc.wait(timeout=RECOVERY_BOUND)
        self.assertEqual(status, 75, server.stderr_text())
        self.assertIn("queue store cannot be reopened", server.stderr_text())
        self.fault("none")
        again = self.start(config_text([connector()]), data_dir=self.data_dir)
        self.assertIn("kept@client.test", self.queued_senders(again))


class FailedResultRecord(StorageFaultCase):

    def setUp(self):
        super().setUp()
        self.hop = FaultingNextHop()
        self.addCleanup(self.hop.stop)
        self.config = config_text(
            [relay_connector()],
            send_connectors=[{"name": "to-hop", "address_spaces": ["faulty.test"],
                              "smart_hosts": [f"127.0.0.1:{self.hop.port}"]}])

    def deliveries(self, mid):
        return sum(1 for m in self.hop.message_ids() if m == mid)

    def assert_stays(self, mid, count, seconds):
        """The next hop's copies of `mid` stay at `count` for `seconds` (a bounded watch)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.assertEqual(self.deliveries(mid), count, "the message was sent again")
            time.sleep(0.2)

    def test_eio_while_recording_a_result_sends_once_and_records_it_after_recovery(self):
        server = self.start_faulty(self.config)
        self.hop.fault_on_dot = lambda: self.fault("eio")
        mid = submit(server, "bob@faulty.test")
        wait_until(lambda: self.deliveries(mid) >= 1, 30, what="the first delivery")
        # before: planned again every second, 47 copies; now held in memory, never planned
        self.assert_stays(mid, 1, 8)
        self.assertIn("results held until the queue store takes writes again", server.stderr_text())

        self.hop.fault_on_dot = None
        self.fault("none")
        wait_until(lambda: server.queue_list() == [], RECOVERY_BOUND, interval=0.5,
                   what="the held result to be recorded (message removed)")
        self.assertEqual(self.deliveries(mid), 1)
        sys.stderr.write(f"\n[faults] EIO while recording the result: next hop received the message "
                         f"{self.deliveries(mid)} time(s)\n")

    def test_kill_9_while_a_result_is_held_sends_at_most_once_more(self):
        server = self.start_faulty(self.config)
        self.hop.fault_on_dot = lambda: self.fault("eio")
        mid = submit(server, "bob@faulty.test")
        wait_until(lambda: self.deliveries(mid) >= 1, 30, what="the first delivery")
        wait_until(lambda: "results held" in server.stderr_text(), 10, what="the failed record")
        self.kill9(server)
        self.hop.fault_on_dot = None
        self.fault("none")
        again = self.start(self.config, data_dir=self.data_dir)
        wait_until(lambda: again.queue_list() == [], 60, interval=0.5, what="the queue to empty after the restart")
        # Sent again only if the failed record did not reach the disk after all (with the
        # process gone, its WAL bytes in the page cache may still be replayed).
        copies = self.deliveries(mid)
        self.assertIn(copies, (1, 2))
        self.assert_stays(mid, copies, 3)
        sys.stderr.write(f"\n[faults] kill -9 with a held result: next hop received the message "
                         f"{self.deliveries(mid)} time(s)\n")


if __name__ == "__main__":
    unittest.main()
