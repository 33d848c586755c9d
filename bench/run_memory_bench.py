#!/usr/bin/env python3
"""Memory benchmark for Postern (issue goals, DESIGN §7 "Bodies"):

  big       peak memory above idle while eight clients send 20 MB messages at once
            (goal: under 96 MB). VmHWM of the server process, minus its RSS when idle.
  sessions  memory per idle TLS session: N clients (default 10,000) connect, EHLO,
            STARTTLS, EHLO, and stay; (RSS with them - RSS idle) / N (goal: <= 32 KiB).
            Postfix is not compared here: it spends a process per session.

Everything on loopback; the clients are this script's own sockets (Python ssl), spread
over 127.0.0.0/8 source addresses so no per-source limit applies. Results go to
bench/results/memory-<timestamp>.md and .json. Not a CTest test.

    bench/run_memory_bench.py [--build BUILD] [--sessions 10000] [--only big|sessions]
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from postern_testlib import pki, wait_until  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def start_postern(binary, work, extra_server=""):
    p = pki()
    data = os.path.join(work, "data")
    os.makedirs(data, mode=0o700)
    shutil.copy(p.keyring, os.path.join(data, "keyring.p12"))
    shutil.copy(p.stash, os.path.join(data, "keyring.sth"))
    os.chmod(os.path.join(data, "keyring.p12"), 0o600)
    os.chmod(os.path.join(data, "keyring.sth"), 0o600)
    config = os.path.join(work, "postern.toml")
    with open(config, "w") as f:
        f.write(f"""[server]
hostname = "mx.postern.test"
data_dir = "{data}"
accepted_domains = ["example.test"]
max_inbound_connections = 30000
max_connections_per_source = 30000
shutdown_timeout = "5s"
{extra_server}
[tls]
keyring = "keyring.p12"
stash = "keyring.sth"

[queue]
min_free = "1MB"

[[receive_connector]]
name = "inbound"
bind = ["127.0.0.1:0"]
remote_ip_ranges = ["127.0.0.0/8"]
max_message_size = "35MB"
max_inbound_connections_per_source = 30000
connection_inactivity_timeout = "10m"

[[send_connector]]
name = "nowhere"
address_spaces = ["*"]
smart_hosts = ["127.0.0.1:9"]
""")
    ready = os.path.join(work, "ready.json")
    log = open(os.path.join(work, "postern.log"), "wb")
    proc = subprocess.Popen([binary, "serve", "-c", config, "--ready-file", ready], stdout=log, stderr=log,
                            start_new_session=True)
    info = wait_until(lambda: os.path.exists(ready) and json.load(open(ready)), 30, what="the ready file")
    return proc, info["listeners"][0]["port"]


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def read_reply(sock):
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
        lines = buf.split(b"\r\n")
        for line in lines[:-1]:
            if len(line) >= 4 and line[3:4] == b" ":
                return buf
    return buf


def big_messages(binary, work):
    proc, port = start_postern(binary, work)
    try:
        time.sleep(0.5)   # let start-up allocations settle before taking the idle figure
        idle, _ = rss_kib(proc.pid)
        line = b"y" * 76 + b"\r\n"
        body = b"Subject: big\r\n\r\n" + line * (20 * 1024 * 1024 // len(line)) + b".\r\n"
        results = []

        def one():
            s = socket.create_connection(("127.0.0.1", port), timeout=120)
            read_reply(s)
            s.sendall(b"EHLO bench.test\r\n")
            read_reply(s)
            s.sendall(b"MAIL FROM:<a@bench.test> SIZE=21000000\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
            got = b""
            while got.count(b"\r\n") < 3:
                got += s.recv(4096)
            s.sendall(body)
            results.append(read_reply(s)[:3])
            s.close()

        threads = [threading.Thread(target=one) for _ in range(8)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - start
        _, hwm = rss_kib(proc.pid)
        return {"idle_kib": idle, "peak_kib": hwm, "above_idle_mb": round((hwm - idle) / 1024, 1),
                "accepted": sum(1 for r in results if r == b"250"), "seconds": round(took, 2),
                "goal_mb": 96}
    finally:
        stop(proc)


def idle_sessions(binary, work, count):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1000), hard))
    proc, port = start_postern(binary, work)
    ctx = ssl.create_default_context(cafile=pki().ca)
    ctx.check_hostname = False
    socks = []
    try:
        time.sleep(0.5)
        idle, _ = rss_kib(proc.pid)
        start = time.monotonic()
        for i in range(count):
            source = f"127.{1 + i // 60000}.{(i // 250) % 240 + 1}.{i % 250 + 1}"
            raw = socket.socket()
            raw.bind((source, 0))
            raw.settimeout(30)
            raw.connect(("127.0.0.1", port))
            read_reply(raw)
            raw.sendall(b"EHLO bench.test\r\n")
            read_reply(raw)
            raw.sendall(b"STARTTLS\r\n")
            read_reply(raw)
            tls = ctx.wrap_socket(raw, server_hostname="mx.postern.test")
            tls.sendall(b"EHLO bench.test\r\n")
            read_reply(tls)
            socks.append(tls)
        took = time.monotonic() - start
        time.sleep(1)
        rss, _ = rss_kib(proc.pid)
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        return {"sessions": count, "idle_kib": idle, "with_sessions_kib": rss,
                "per_session_kib": round((rss - idle) / count, 2), "server_descriptors": fds,
                "seconds_to_open": round(took, 1), "goal_kib": 32}
    finally:
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
        stop(proc)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--only", choices=["big", "sessions"])
    args = ap.parse_args()
    binary = os.path.join(args.build, "postern")
    results = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "commit": subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                        capture_output=True, text=True).stdout.strip()}
    with tempfile.TemporaryDirectory(prefix="postern-membench-") as work:
        if args.only in (None, "big"):
            os.makedirs(os.path.join(work, "big"))
            results["big"] = big_messages(binary, os.path.join(work, "big"))
            print("big:", results["big"], flush=True)
        if args.only in (None, "sessions"):
            os.makedirs(os.path.join(work, "sessions"))
            results["sessions"] = idle_sessions(binary, os.path.join(work, "sessions"), args.sessions)
            print("sessions:", results["sessions"], flush=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = os.path.join(HERE, "results", f"memory-{stamp}")
    with open(out + ".json", "w") as f:
        json.dump(results, f, indent=2)
    with open(out + ".md", "w") as f:
        f.write(f"# Memory benchmark {results['when']} (commit {results['commit']})\n\n")
        if "big" in results:
            b = results["big"]
            f.write(f"- 8 concurrent 20 MB messages: {b['accepted']}/8 accepted in {b['seconds']} s; peak "
                    f"{b['peak_kib']} KiB (VmHWM) vs idle {b['idle_kib']} KiB: **{b['above_idle_mb']} MB above "
                    f"idle** (goal < {b['goal_mb']} MB)\n")
        if "sessions" in results:
            s = results["sessions"]
            f.write(f"- {s['sessions']} idle TLS sessions (after STARTTLS and EHLO): RSS {s['with_sessions_kib']} KiB "
                    f"vs idle {s['idle_kib']} KiB: **{s['per_session_kib']} KiB per session** (goal <= "
                    f"{s['goal_kib']} KiB); {s['server_descriptors']} descriptors\n")
    print(f"results: {out}.md")


if __name__ == "__main__":
    main()
