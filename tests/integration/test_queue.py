"""`postern queue -c FILE list | show ID | retry [ID] | hold ID | release ID | delete ID`
(DESIGN §4): through the running server's control socket, and directly on the store when
no server runs.

The send connector's smart host is a loopback port where nothing listens, so accepted mail
stays queued, deferred with the reason. The retry schedule is one hour: after its first
attempt a message is attempted again within the test only when `retry` or `release` asks.
"""

import json
import shutil
import os
import smtplib
import time
import unittest

from postern_testlib import (ACCEPTED_DOMAIN, PosternTestCase, config_text, message,
                             wait_until)

PROMPT = 15.0          # an attempt asked for by retry/release happens within this
QUIET = 3.0            # a held message is watched this long for attempts that must not happen


def send_one(server, subject="queued", rcpts=("bob",)):
    """One message over plain SMTP; returns its queue id (text after "queued as")."""
    with smtplib.SMTP("127.0.0.1", server.port(), timeout=30) as s:
        s.ehlo()
        s.mail("alice@client.test")
        for r in rcpts:
            s.rcpt(f"{r}@{ACCEPTED_DOMAIN}")
        code, text = s.data(message(1024, subject=subject))
        assert code == 250, (code, text)
        return text.decode().rsplit(" ", 1)[-1]


def config_of(server):
    with open(server.config_file) as f:
        return f.read()


def entry(server, queue_id):
    for m in server.queue_list(strict=True):
        if m["id"] == queue_id:
            return m
    return None


def attempts(server, queue_id):
    m = entry(server, queue_id)
    return m["recipients"][0]["attempts"] if m else None


class QueueWithServer(PosternTestCase):

    def setUp(self):
        super().setUp()
        self.server = self.start(config_text(queue={"retry": ["1h"]}))

    def queue(self, *args):
        return self.server.queue(*args)

    def first_attempt_done(self, queue_id):
        return wait_until(lambda: (attempts(self.server, queue_id) or 0) >= 1 and
                          entry(self.server, queue_id),
                          PROMPT, what="the first delivery attempt")

    def test_list_shows_the_message_and_why_it_waits(self):
        queue_id = send_one(self.server, rcpts=("bob", "carol"))
        m = self.first_attempt_done(queue_id)
        self.assertEqual(m["sender"], "alice@client.test")
        self.assertGreater(m["size"], 1024)
        self.assertFalse(m["held"])
        self.assertEqual(m["status"], "deferred")
        self.assertTrue(m["reason"], m)
        self.assertRegex(m["received_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual([r["address"] for r in m["recipients"]],
                         [f"bob@{ACCEPTED_DOMAIN}", f"carol@{ACCEPTED_DOMAIN}"])
        for r in m["recipients"]:
            self.assertEqual(r["state"], "pending")
            self.assertTrue(r["last_reply"], r)
            self.assertRegex(r["next_attempt"], r"^\d{4}-.*Z$")
        self.assertEqual(m["reason"], m["recipients"][0]["last_reply"])

        human = self.queue("list")
        self.assertEqual(human.returncode, 0, human.stderr)
        self.assertIn("ID", human.stdout.splitlines()[0])
        self.assertIn(queue_id, human.stdout)
        self.assertIn("waiting: " + m["reason"], human.stdout)
        self.assertIn(f"bob@{ACCEPTED_DOMAIN}", human.stdout)
        self.assertIn("attempts 1, next attempt", human.stdout)

    def test_show_gives_envelope_and_headers_not_the_body(self):
        queue_id = send_one(self.server, subject="show me")
        p = self.queue("show", queue_id, "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        m = json.loads(p.stdout)["message"]
        self.assertEqual(m["id"], queue_id)
        self.assertEqual(m["receive_connector"], "inbound")
        self.assertTrue(m["client_address"].startswith("127.0.0.1:"), m)
        self.assertIn("Subject: show me", m["headers"])
        self.assertNotIn("xxxxxxxx", p.stdout)          # the body's lines
        human = self.queue("show", queue_id)
        self.assertEqual(human.returncode, 0, human.stderr)
        self.assertIn("Subject: show me", human.stdout)
        self.assertNotIn("xxxxxxxx", human.stdout)

    def test_show_gives_the_rfc3461_parameters_as_received(self):
        with smtplib.SMTP("127.0.0.1", self.server.port(), timeout=30) as s:
            s.ehlo()
            self.assertTrue(s.has_extn("dsn"))
            s.mail("alice@client.test", ["RET=FULL", "ENVID=QQ+2B314"])
            s.rcpt(f"bob@{ACCEPTED_DOMAIN}", ["NOTIFY=success,delay", f"ORCPT=rfc822;Bob@{ACCEPTED_DOMAIN}"])
            s.rcpt(f"carol@{ACCEPTED_DOMAIN}", ["NOTIFY=NEVER"])
            s.rcpt(f"dave@{ACCEPTED_DOMAIN}")
            code, text = s.data(message(256, subject="dsn"))
            self.assertEqual(code, 250, text)
            queue_id = text.decode().rsplit(" ", 1)[-1]
        p = self.queue("show", queue_id, "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        m = json.loads(p.stdout)["message"]
        self.assertEqual(m["ret"], "FULL")
        self.assertEqual(m["envid"], "QQ+2B314")
        rcpts = {r["address"]: r for r in m["recipients"]}
        self.assertEqual(rcpts[f"bob@{ACCEPTED_DOMAIN}"]["notify"], "SUCCESS,DELAY")
        self.assertEqual(rcpts[f"bob@{ACCEPTED_DOMAIN}"]["orcpt"], f"rfc822;Bob@{ACCEPTED_DOMAIN}")
        self.assertEqual(rcpts[f"carol@{ACCEPTED_DOMAIN}"]["notify"], "NEVER")
        self.assertEqual(rcpts[f"dave@{ACCEPTED_DOMAIN}"]["notify"], "")
        self.assertEqual(rcpts[f"dave@{ACCEPTED_DOMAIN}"]["orcpt"], "")
        listed = entry(self.server, queue_id)
        self.assertEqual([r["notify"] for r in listed["recipients"]], ["SUCCESS,DELAY", "NEVER", ""])
        human = self.queue("show", queue_id)
        self.assertEqual(human.returncode, 0, human.stderr)
        self.assertIn(f"dsn: NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Bob@{ACCEPTED_DOMAIN}", human.stdout)
        self.assertIn("dsn: NOTIFY=NEVER", human.stdout)
        self.assertIn("ret:", human.stdout)

    def test_bad_and_unknown_ids(self):
        p = self.queue("show", "../../etc/passwd")
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("not a queue id", p.stderr)
        p = self.queue("hold", "0000000000000001")
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("no message 0000000000000001 in the queue", p.stderr)
        p = self.queue("hold")
        self.assertEqual(p.returncode, 2, p.stderr)

    def test_hold_stops_attempts_release_and_retry_bring_them_back_delete_removes(self):
        queue_id = send_one(self.server)
        self.first_attempt_done(queue_id)

        p = self.queue("hold", queue_id)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("held", p.stdout)
        self.assertTrue(entry(self.server, queue_id)["held"])
        self.assertEqual(entry(self.server, queue_id)["status"], "held")
        before = attempts(self.server, queue_id)
        # A retry makes it due now, but held it stays: no attempt while we watch.
        p = self.queue("retry", queue_id)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("held", p.stdout)
        deadline = time.monotonic() + QUIET
        while time.monotonic() < deadline:
            self.assertEqual(attempts(self.server, queue_id), before,
                             "a held message was attempted")
            time.sleep(0.2)

        # Released, and due (the retry above): attempted promptly.
        p = self.queue("release", queue_id)
        self.assertEqual(p.returncode, 0, p.stderr)
        wait_until(lambda: attempts(self.server, queue_id) == before + 1, PROMPT,
                   what="an attempt after release")
        self.assertFalse(entry(self.server, queue_id)["held"])

        # Deferred for an hour now; retry brings the next attempt to now.
        m = entry(self.server, queue_id)
        self.assertEqual(m["status"], "deferred")
        p = self.queue("retry", queue_id)
        self.assertEqual(p.returncode, 0, p.stderr)
        wait_until(lambda: attempts(self.server, queue_id) == before + 2, PROMPT,
                   what="an attempt after retry")

        # retry without an id: every message.
        other = send_one(self.server, subject="other")
        self.first_attempt_done(other)
        p = self.queue("retry")
        self.assertEqual(p.returncode, 0, p.stderr)
        wait_until(lambda: attempts(self.server, other) == 2, PROMPT, what="retry of every message")

        p = self.queue("delete", queue_id)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("deleted " + queue_id, p.stdout)
        self.assertIsNone(entry(self.server, queue_id))
        self.assertIsNotNone(entry(self.server, other))
        p = self.queue("show", queue_id)
        self.assertEqual(p.returncode, 1)
        self.assertIn("no message", p.stderr)
        self.assertIn(f"queue-delete {queue_id}", self.server.stderr_text())

    def test_a_held_message_stays_held_across_a_restart(self):
        queue_id = send_one(self.server)
        self.first_attempt_done(queue_id)
        self.assertEqual(self.queue("hold", queue_id).returncode, 0)
        self.assertEqual(self.server.stop(), 0, self.server.stderr_text())
        second = self.start(config_of(self.server), data_dir=self.server.data_dir,
                            base_dir=self.server.base)
        m = entry(second, queue_id)
        self.assertTrue(m["held"], m)
        self.assertEqual(second.queue("retry", queue_id).returncode, 0)
        deadline = time.monotonic() + QUIET
        while time.monotonic() < deadline:
            self.assertEqual(attempts(second, queue_id), 1, "a held message was attempted")
            time.sleep(0.2)

    def test_a_locked_store_without_an_answering_socket_is_said_plainly(self):
        # The server runs (and holds the store's lock) but its socket is gone.
        os.unlink(self.server.ready["control_socket"])
        p = self.queue("list")
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("locked by another process", p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)


class QueueWithoutServer(PosternTestCase):

    def test_list_show_hold_delete_work_directly_on_the_store(self):
        server = self.start(config_text(queue={"retry": ["1h"]}))
        keep = send_one(server, subject="keep")
        drop = send_one(server, subject="drop")
        wait_until(lambda: all((attempts(server, i) or 0) >= 1 for i in (keep, drop)), PROMPT,
                   what="first attempts")
        self.assertEqual(server.stop(), 0, server.stderr_text())
        self.assertFalse(os.path.exists(server.ready["control_socket"]))

        listed = server.queue_list(strict=True)
        self.assertEqual(sorted(m["id"] for m in listed), sorted([keep, drop]))
        for m in listed:
            self.assertEqual(m["status"], "deferred")
            self.assertTrue(m["reason"])
        p = server.queue("show", keep)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("Subject: keep", p.stdout)
        self.assertEqual(server.queue("hold", keep).returncode, 0)
        self.assertTrue(entry(server, keep)["held"])
        p = server.queue("delete", drop)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([m["id"] for m in server.queue_list(strict=True)], [keep])
        p = server.queue("retry")
        self.assertEqual(p.returncode, 0, p.stderr)

        # The server starts on the store the command used, and sees the same queue.
        again = self.start(config_of(server), data_dir=server.data_dir,
                           base_dir=server.base)
        m = entry(again, keep)
        self.assertTrue(m["held"])
        self.assertIsNone(entry(again, drop))

    def test_no_store_yet_is_an_empty_queue(self):
        server = self.start(config_text())
        self.assertEqual(server.stop(), 0)
        shutil.rmtree(os.path.join(server.data_dir, "queue"))
        p = server.queue("list", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["messages"], [])
        self.assertFalse(os.path.exists(os.path.join(server.data_dir, "queue")))
        p = server.queue("list")
        self.assertIn("The queue is empty", p.stdout)


if __name__ == "__main__":
    unittest.main()
