"""`postern serve`: the ready-file (DESIGN §4) and a graceful stop on SIGTERM (§5 421 4.3.2)."""

import os
import signal
import stat
import unittest

from postern_testlib import (ACCEPTED_DOMAIN, PosternTestCase, SmtpConn, config_text, connector,
                             message, port_accepts, wait_until)


class Serve(PosternTestCase):

    def test_ready_file_names_every_listener(self):
        server = self.start(config_text([connector("first"), connector("second", tls="none", bind=["127.0.0.2:0"])]))
        ready = server.ready
        self.assertEqual(ready["pid"], server.proc.pid)
        names = sorted(l["connector"] for l in ready["listeners"])
        self.assertEqual(names, ["first", "second"])
        for l in ready["listeners"]:
            self.assertEqual(l["address"], {"first": "127.0.0.1", "second": "127.0.0.2"}[l["connector"]])
            self.assertNotEqual(l["port"], 0)
            c = SmtpConn(l["address"], l["port"])
            self.addCleanup(c.close)
            c.expect("220 mx.postern.test")
        self.assertEqual(ready["control_socket"], os.path.join(server.data_dir, "control.sock"))
        self.assertEqual(stat.S_IMODE(os.stat(server.data_dir).st_mode), 0o700)

    def test_sigterm_finishes_the_message_in_flight_then_says_421_432(self):
        server = self.start(config_text(server={"shutdown_timeout": "5s"}))
        busy = SmtpConn("127.0.0.1", server.port(), timeout=20)
        idle = SmtpConn("127.0.0.1", server.port(), timeout=20)
        self.addCleanup(busy.close)
        self.addCleanup(idle.close)
        busy.hello()
        idle.hello()
        busy.expect("250", "MAIL FROM:<alice@client.test>")
        busy.expect("250", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
        busy.expect("354", "DATA")
        busy.send_raw(message(2000)[:500])
        server.proc.send_signal(signal.SIGTERM)
        # new clients are no longer let in (bounded wait for the listener to close)
        wait_until(lambda: not port_accepts(server.port()), 10, what="the listener to close")
        # the message in flight is finished and acknowledged
        busy.send_raw(message(2000)[500:] + ".\r\n")
        busy.expect("250")
        # then the sessions are told the server is going away, within shutdown_timeout
        busy.send("NOOP")
        code, lines = busy.reply()
        if code == 250:
            code, lines = busy.reply()
        self.assertEqual(code, 421, lines)
        self.assertTrue(lines[-1].startswith("421 4.3.2"), lines)
        idle.expect("421 4.3.2")
        server.proc.wait(timeout=20)
        self.assertEqual(server.proc.returncode, 0, server.stderr_text())


if __name__ == "__main__":
    unittest.main()
