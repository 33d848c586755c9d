"""Nothing acknowledged is lost: restarts, a crash, a full disk (DESIGN §2, §5 452 4.3.1)."""

import errno
import os
import signal
import smtplib
import subprocess
import tempfile
import threading
import unittest

from postern_testlib import (ACCEPTED_DOMAIN, SERVER_NAME, PosternTestCase, ProtocolLog,
                             SmtpConn, config_text, connector, message, start_postern,
                             wait_until)


def send_messages(server, count, size=2048, tag="m"):
    """Sends `count` messages over STARTTLS on one connection; returns the queue ids
    (text after "queued as") of those acknowledged with 250."""
    from postern_testlib import pki
    ids = []
    with smtplib.SMTP("127.0.0.1", server.port(), timeout=30) as s:
        s.starttls(context=pki().client_context())
        s.ehlo()
        for i in range(count):
            s.mail("alice@client.test")
            s.rcpt(f"bob@{ACCEPTED_DOMAIN}")
            code, text = s.data(message(size, subject=f"{tag}{i}"))
            if code == 250:
                ids.append(text.decode().rsplit(" ", 1)[-1])
    return ids


class Restart(PosternTestCase):

    def restart(self, server, how):
        if how == "SIGTERM":
            self.assertEqual(server.stop(), 0, server.stderr_text())
        else:
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(timeout=30)
        return self.start(open(server.config_file).read(), data_dir=server.data_dir,
                          base_dir=server.base)

    def test_sigterm_restart_keeps_every_acknowledged_message(self):
        config = config_text()
        first = self.start(config)
        ids = send_messages(first, 20)
        self.assertEqual(len(ids), 20)
        second = self.restart(first, "SIGTERM")
        # the restarted server serves
        c = SmtpConn("127.0.0.1", second.port())
        self.addCleanup(c.close)
        c.hello()
        # the acknowledgements are in the protocol log of the first run
        self.assertEqual(sum(ProtocolLog.accepted_messages(r)
                             for r in second.protocol_log().sessions().values()), 20)
        # every acknowledged id is still queued (the send connector's next hop refuses,
        # so nothing has left)
        queue = second.queue_list(strict=True)
        queued_ids = {str(e["id"]) for e in queue}
        missing = [i for i in ids if i not in queued_ids]
        self.assertEqual(missing, [], f"acknowledged but gone after restart: {missing}")

    def test_sigkill_during_load_keeps_every_acknowledged_message(self):
        config = config_text([connector(max_inbound_connections_per_source=50)])
        first = self.start(config)
        acknowledged, lock = [], threading.Lock()
        stop = threading.Event()

        def client(n):
            try:
                with smtplib.SMTP("127.0.0.1", first.port(), timeout=30) as s:
                    s.ehlo()
                    while not stop.is_set():
                        s.mail("alice@client.test")
                        s.rcpt(f"bob@{ACCEPTED_DOMAIN}")
                        code, text = s.data(message(4096, subject=f"c{n}"))
                        if code == 250:
                            with lock:
                                acknowledged.append(text.decode().rsplit(" ", 1)[-1])
            except (OSError, smtplib.SMTPException):
                pass       # the server is killed under us: expected
        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        wait_until(lambda: len(acknowledged) >= 100, 60, what="100 acknowledged messages")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        with lock:
            ids = list(acknowledged)
        second = self.start(config, data_dir=first.data_dir, base_dir=first.base)
        queue = second.queue_list(strict=True)
        queued_ids = {str(e["id"]) for e in queue}
        missing = [i for i in ids if i not in queued_ids]
        self.assertEqual(missing, [], f"{len(missing)} of {len(ids)} acknowledged messages lost")


class FullDisk(PosternTestCase):
    """data_dir on a small tmpfs: below min_free, MAIL gets 452 4.3.1; once space is back,
    250 again without a restart."""

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root")
        self.base = tempfile.mkdtemp(prefix="postern-fulldisk-")
        os.chmod(self.base, 0o755)
        self.mnt = os.path.join(self.base, "data")
        os.makedirs(self.mnt)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", self.mnt],
                           capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest(f"cannot mount tmpfs: {p.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", "-l", self.mnt], capture_output=True)

    def free(self):
        st = os.statvfs(self.mnt)
        return st.f_bavail * st.f_frsize

    def fill(self, leave):
        """Writes a filler file until only `leave` bytes remain free."""
        filler = os.path.join(self.mnt, "filler")
        chunk = b"\0" * (1 << 20)
        with open(filler, "ab", buffering=0) as f:
            try:
                while self.free() > leave + len(chunk):
                    f.write(chunk)
                remaining = self.free() - leave
                if remaining > 0:
                    f.write(b"\0" * remaining)
            except OSError as e:          # the server wrote meanwhile: the disk is full
                if e.errno != errno.ENOSPC:
                    raise
        return filler

    def transaction(self, server):
        c = SmtpConn("127.0.0.1", server.port())
        self.addCleanup(c.close)
        c.hello()
        c.send("MAIL FROM:<alice@client.test>")
        code, lines = c.reply()
        if code == 250:
            c.expect("250", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
            c.expect("354", "DATA")
            c.send_raw(message(1024) + ".\r\n")
            code, lines = c.reply()
        c.send("QUIT")
        return code, lines

    def test_low_disk_gets_452_431_then_recovers_without_restart(self):
        server = self.start(config_text(queue={"min_free": "8MB"}), data_dir=self.mnt,
                            base_dir=self.base)
        code, lines = self.transaction(server)
        self.assertEqual(code, 250, lines)
        filler = self.fill(leave=2 << 20)
        code, lines = self.transaction(server)
        self.assertEqual(code, 452, lines)
        self.assertTrue(lines[-1].startswith("452 4.3.1"), lines)
        os.unlink(filler)
        # the server notices the space coming back (bounded poll, no restart)
        wait_until(lambda: self.transaction(server)[0] == 250, 30, interval=0.5,
                   what="250 after freeing the disk")
        self.assertTrue(server.running())

    def test_disk_full_at_data_gets_452_431_and_stores_nothing_half(self):
        # min_free tiny: the write itself fails, the server must answer 452 4.3.1 and live on
        server = self.start(config_text(queue={"min_free": "1KB"}), data_dir=self.mnt,
                            base_dir=self.base)
        filler = self.fill(leave=0)
        c = SmtpConn("127.0.0.1", server.port())
        self.addCleanup(c.close)
        c.hello()
        c.send("MAIL FROM:<alice@client.test>")
        code, lines = c.reply()
        if code == 250:
            c.expect("250", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
            c.expect("354", "DATA")
            c.send_raw(message(256 * 1024) + ".\r\n")
            code, lines = c.reply()
        self.assertEqual(code, 452, lines)
        self.assertTrue(lines[-1].startswith("452 4.3.1"), lines)
        self.assertTrue(server.running(), server.stderr_text())
        os.unlink(filler)
        wait_until(lambda: self.transaction(server)[0] == 250, 30, interval=0.5,
                   what="250 after freeing the disk")


if __name__ == "__main__":
    unittest.main()
