"""SIGKILL during delivery, then restart (DESIGN.md §2 "nothing acknowledged is ever lost",
engine.hpp: delivery is at-least-once).

A slow next hop takes each message's DATA but answers the final dot only when the test
opens its gate. N messages are accepted by Postern; once the slow hop holds at least one
transaction at the final dot, Postern gets SIGKILL. Postern restarts on the same
data_dir with the send connector pointing at a normal fake next hop: every message
reaches a next hop at least once (by Message-ID), none is lost, and the queue empties.
"""

import signal
import unittest

from delivery_fakes import (DELIVERY_TIMEOUT, GatedNextHop, NextHop, relay_connector,
                            require_delivery, submit)
from postern_testlib import (PosternTestCase, config_text, hold_send_connector, start_postern,
                             wait_until)

N = 8


def config(port):
    return config_text([relay_connector()], queue={"retry": ["1s"]}, send_connectors=[
        {"name": "to-partner", "address_spaces": ["partner.test"],
         "smart_hosts": [f"127.0.0.1:{port}"], "max_per_destination": 2},
        hold_send_connector()])


class KillDuringDelivery(PosternTestCase):

    def test_every_message_reaches_the_next_hop_after_sigkill_and_restart(self):
        slow = GatedNextHop()
        self.addCleanup(slow.stop)
        a = start_postern(config(slow.port))
        self.addCleanup(lambda: a.proc.poll() is None and (a.proc.kill(), a.proc.wait(10)))
        require_delivery(self, a)

        mids = [submit(a, f"user{i}@partner.test", f"crash {i}") for i in range(N)]
        self.assertEqual(len(set(mids)), N)
        wait_until(lambda: slow.waiting >= 1, DELIVERY_TIMEOUT,
                   what="the slow next hop to hold a transaction at the final dot")
        # Mid-delivery: DATA sent, no answer yet.
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=10)
        self.assertEqual(a.proc.returncode, -signal.SIGKILL)
        slow.stop()      # its 250s never reach anyone now
        held_at_kill = [m for m in slow.message_ids()]
        self.assertTrue(held_at_kill)

        normal = NextHop("no-starttls")
        self.addCleanup(normal.stop)
        # Same data_dir and directory; the configuration now names the normal next hop.
        b = self.start(config(normal.port), data_dir=a.data_dir, base_dir=a.base)
        require_delivery(self, b)

        def all_arrived():
            return set(mids) <= set(normal.message_ids())
        wait_until(all_arrived, DELIVERY_TIMEOUT, what="every message at the next hop after the restart")
        # None was acknowledged before the kill, so every one is sent again: at least once.
        got = normal.message_ids()
        for mid in mids:
            self.assertGreaterEqual(got.count(mid), 1, mid)
        # The ones cut at the final dot came again (at-least-once, not at-most-once).
        for mid in held_at_kill:
            self.assertIn(mid, got)
        if b.queue_list() is not None:
            wait_until(lambda: b.queue_list() == [], DELIVERY_TIMEOUT, what="the queue to empty")


if __name__ == "__main__":
    unittest.main()
