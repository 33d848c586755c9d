#!/usr/bin/env python3
"""Acceptance benchmark: Postern vs Postfix's smtpd, same machine, same key and certificate.

For each server, at 1, 16 and 64 concurrent sessions and with 1 KiB and 100 KiB messages,
bench/smtp_load (EHLO, STARTTLS, EHLO, then MAIL/RCPT/DATA in a loop) measures
messages/s and p50/p99 transaction latency. Beside it:
  CPU per message   user+system time of the server's processes over the measured run
                    (Postern: its process; Postfix: the master, its live descendants and
                    what the master reaped from exited children, /proc/<pid>/stat
                    utime+stime+cutime+cstime)
  receive CPU       Postern only: the part of it spent by the receive side's threads (the
                    main and smtp-io threads, queue-commit, protocol-log), from
                    /proc/<pid>/task/*/stat; the rest is RocksDB's background threads and
                    the delivery engine, which rescans the queue after every commit
  client CPU        smtp_load's own user+system time per message (it shares the machine)
  syncs per message fsync/fdatasync/sync_file_range/msync calls counted with
                    `strace -c -f` attached to the same processes, in a separate run of
                    --count messages (strace slows the server, so it never runs during the
                    timed run)
Only acceptance is measured, nothing is delivered:
  Postern   accepted mail is routed by a send connector to a loopback smart host that
            accepts TCP connections and never speaks (max_per_destination = 1), so at most
            one delivery attempt hangs and everything else stays queued
  Postfix   smtpd_end_of_data_restrictions = check_client_access static:HOLD: every
            message is made durable by cleanup, then parked in the hold queue

Results: bench/results/accept-<timestamp>.md and .json. Not a CTest test.

  bench/run_accept_bench.py [--postern BUILD/postern] [--load BUILD/bench/smtp_load]
                            [--duration 10] [--sync-count 300] [--sessions 1,16,64]
                            [--sizes 1024,102400] [--only postern|postfix]
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import postern_testlib as lib  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SYNC_CALLS = "fsync,fdatasync,sync_file_range,msync,syncfs,sync"


# --------------------------------------------------------------------------- process accounting

def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pid):
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pids, with_children=True):
    """utime+stime (+cutime+cstime: reaped children) of each pid, in seconds."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after ")": state=0 ppid=1 ... utime=11 stime=12 cutime=13 cstime=14
        ticks = int(fields[11]) + int(fields[12])
        if with_children:
            ticks += int(fields[13]) + int(fields[14])
        total += ticks
    return total / CLK_TCK


RECEIVE_THREADS = ("smtp-io", "queue-commit", "protocol-log")


def receive_cpu_seconds(pid):
    """utime+stime of the receive side's threads of one Postern process, in seconds."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(tid) == pid or comm in RECEIVE_THREADS:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


class Target:
    name = ""

    def receive_cpu(self):
        return None

    def pids(self):
        raise NotImplementedError

    def cpu(self):
        return cpu_seconds(self.pids())


# --------------------------------------------------------------------------- servers

class Blackhole:
    """A loopback TCP listener that accepts connections and never says anything."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


class PosternTarget(Target):
    name = "postern"

    def __init__(self):
        self.hole = Blackhole()
        cfg = lib.config_text(
            [lib.connector("bench", max_inbound_connections_per_source=500,
                           connection_inactivity_timeout="5m", protocol_logging="verbose")],
            server={"max_inbound_connections": 2000, "max_connections_per_source": 500},
            queue={"min_free": "100MB"},
            send_connectors=[{"name": "hold", "address_spaces": ["*"],
                              "smart_hosts": [f"127.0.0.1:{self.hole.port}"],
                              "max_per_destination": 1}])
        self.server = lib.start_postern(cfg)
        self.port = self.server.port()

    def pids(self):
        return [self.server.pid]

    def receive_cpu(self):
        return receive_cpu_seconds(self.server.pid)

    def held(self):
        q = self.server.queue_list()
        return None if q is None else len(q)

    def stop(self):
        try:
            self.server.stop()
        except lib.PosternError as e:
            # With tens of thousands of messages queued the delivery engine can take longer
            # than the stop timeout to wind down; the measurement is over, the data is
            # thrown away: kill it and go on.
            print(f"postern stop: {str(e).splitlines()[0]}; killed", file=sys.stderr, flush=True)
            self.server.proc.kill()
            self.server.proc.wait(timeout=30)
        finally:
            self.hole.close()
            shutil.rmtree(self.server.base, ignore_errors=True)


class PostfixTarget(Target):
    name = "postfix"

    def __init__(self, pki):
        self.pf = lib.PostfixInstance({
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": pki.path("server.pem"),
            "smtpd_tls_key_file": pki.path("server.key"),
            "smtpd_tls_loglevel": "0",
            "smtpd_tls_mandatory_protocols": ">=TLSv1.2",
            "smtpd_tls_protocols": ">=TLSv1.2",
            "smtpd_tls_session_cache_database": "",
            "smtpd_end_of_data_restrictions": "check_client_access static:HOLD",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "default_process_limit": "300",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            "smtpd_client_message_rate_limit": "0",
            "in_flow_delay": "0s",
            "message_size_limit": str(40 * 1024 * 1024),
            "relayhost": "[127.0.0.1]:9",
            "defer_transports": "smtp",
        })
        self.pf.start()
        self.port = self.pf.port

    def pids(self):
        return tree(self.pf.master_pid())

    def cpu(self):
        # the master's cutime/cstime hold what exited smtpd/cleanup processes used;
        # live descendants count themselves (their own reaped children included)
        return cpu_seconds(self.pids())

    def held(self):
        n = 0
        for _, _, files in os.walk(os.path.join(self.pf.queue, "hold")):
            n += len(files)
        return n

    def stop(self):
        self.pf.stop()
        shutil.rmtree(self.pf.base, ignore_errors=True)


# --------------------------------------------------------------------------- measurement

def load(args, target, sessions, size, duration=None, count=None):
    cmd = [args.load, "--port", str(target.port), "--sessions", str(sessions), "--size", str(size),
           "--ca", lib.pki().ca, "--sni", lib.SERVER_NAME, "--json"]
    cmd += ["--count", str(count)] if count else ["--duration", str(duration)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"smtp_load failed ({p.returncode}): {p.stdout}{p.stderr}")


def count_syncs(args, target, sessions, size):
    """Runs --sync-count messages with strace -c -f attached; returns (syncs, messages)."""
    if not shutil.which("strace"):
        return None, None
    out = os.path.join(lib.tempfile.gettempdir(), f"strace-{target.name}-{os.getpid()}.txt")
    cmd = ["strace", "-f", "-c", "-e", "trace=" + SYNC_CALLS, "-o", out]
    for p in target.pids():
        cmd += ["-p", str(p)]
    st = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # strace prints "Process N attached" per thread; wait (bounded) until it reports them
    try:
        lib.wait_until(lambda: os.path.exists(f"/proc/{st.pid}") and _traced(target), 10,
                       what="strace to attach")
    except TimeoutError:
        pass
    result = load(args, target, sessions, size, count=args.sync_count)
    st.send_signal(signal.SIGINT)
    st.wait(timeout=60)
    calls = 0
    with open(out) as f:
        for line in f:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
            if m and m.group(2) in SYNC_CALLS.split(","):
                calls += int(m.group(1))
    os.unlink(out)
    return calls, result["accepted"]


def _traced(target):
    for p in target.pids():
        try:
            with open(f"/proc/{p}/status") as f:
                if re.search(r"TracerPid:\s+0\b", f.read()):
                    return False
        except OSError:
            pass
    return True


def measure(args, target, sessions, size):
    before, rx_before = target.cpu(), target.receive_cpu()
    r = load(args, target, sessions, size, duration=args.duration)
    after, rx_after = target.cpu(), target.receive_cpu()
    row = {"server": target.name, "sessions": sessions, "size": size,
           "messages": r["accepted"], "refused": r["refused"],
           "setup_failures": r["setup_failures"], "messages_per_s": r["messages_per_s"],
           "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "max_ms": r["max_ms"],
           "cpu_s": round(after - before, 3),
           "cpu_ms_per_message": round(1000 * (after - before) / r["accepted"], 3)
           if r["accepted"] else None,
           "receive_cpu_ms_per_message": round(1000 * (rx_after - rx_before) / r["accepted"], 3)
           if r["accepted"] and rx_before is not None else None,
           "client_cpu_ms_per_message": r.get("client_cpu_ms_per_message"),
           "pipelined_sessions": r.get("pipelined_sessions"),
           "first_error": r.get("first_error", "")}
    # sanity: what the server holds after the timed run and the strace run
    if args.sync_count:
        syncs, msgs = count_syncs(args, target, sessions, size)
        row["syncs"] = syncs
        row["sync_messages"] = msgs
        row["syncs_per_message"] = round(syncs / msgs, 3) if syncs is not None and msgs else None
    row["held_after"] = target.held()
    return row


def markdown(rows, meta):
    out = [f"# Acceptance benchmark, {meta['date']}", "",
           f"Host: {meta['host']}, {meta['cpus']} CPUs, kernel {meta['kernel']}. "
           f"Each cell: {meta['duration']} s of load after every session finished "
           "EHLO/STARTTLS/EHLO; TLS on (same key and certificate for both servers); "
           "the load generator shares the machine and pipelines MAIL/RCPT/DATA when offered "
           "(both servers offer it). Syncs counted in a separate run of "
           f"{meta['sync_count']} messages under strace. CPU ms/msg: the whole server "
           "(Postern: its process, delivery engine included); receive: Postern's receive "
           "threads only; client: the load generator.", "",
           "| server | sessions | size | msgs/s | p50 ms | p99 ms | CPU ms/msg | receive CPU | client CPU | syncs/msg | refused | held after |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        size = f"{r['size'] // 1024} KiB"
        fmt = lambda v, spec: "n/a" if v is None else format(v, spec)
        out.append(f"| {r['server']} | {r['sessions']} | {size} | {r['messages_per_s']:.0f} | "
                   f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {fmt(r['cpu_ms_per_message'], '.3f')} | "
                   f"{fmt(r.get('receive_cpu_ms_per_message'), '.3f')} | "
                   f"{fmt(r.get('client_cpu_ms_per_message'), '.3f')} | "
                   f"{fmt(r.get('syncs_per_message'), '.2f')} | {r['refused']} | "
                   f"{fmt(r.get('held_after'), 'd')} |")
    errors = [r for r in rows if r.get("first_error")]
    if errors:
        out += ["", "First error per cell:", ""]
        out += [f"- {r['server']} {r['sessions']}x{r['size']}: `{r['first_error']}`" for r in errors]
    return "\n".join(out) + "\n"


def find_smtp_load(given):
    """The load generator: `given`, else the first build directory that has it."""
    if given is None:
        for d in ("build-perf", "build-it", "build", "build-bench"):
            c = os.path.join(REPO, d, "bench", "smtp_load")
            if os.path.exists(c):
                given = c
                break
    if not given or not os.path.exists(given):
        sys.exit("smtp_load not built: cmake --build BUILD --target smtp_load")
    return given


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--postern", default=os.environ.get("POSTERN_BIN") or lib.postern_bin())
    ap.add_argument("--load", default=None)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--sync-count", type=int, default=300)
    ap.add_argument("--sessions", default="1,16,64")
    ap.add_argument("--sizes", default="1024,102400")
    ap.add_argument("--only", choices=["postern", "postfix"])
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    args.load = find_smtp_load(args.load)
    if args.postern:
        os.environ["POSTERN_BIN"] = args.postern
    sessions = [int(x) for x in args.sessions.split(",")]
    sizes = [int(x) for x in args.sizes.split(",")]
    pki = lib.pki()
    rows = []
    makers = {"postern": PosternTarget, "postfix": lambda: PostfixTarget(pki)}
    for name in ("postern", "postfix"):
        if args.only and args.only != name:
            continue
        for size in sizes:
            for n in sessions:
                # a fresh server per cell: every cell starts with an empty queue
                target = makers[name]()
                try:
                    row = measure(args, target, n, size)
                finally:
                    target.stop()
                rows.append(row)
                print(json.dumps(row), flush=True)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "host": platform.node(), "cpus": os.cpu_count(), "kernel": platform.release(),
            "duration": args.duration, "sync_count": args.sync_count}
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(args.out, f"accept-{stamp}.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    md = markdown(rows, meta)
    with open(os.path.join(args.out, f"accept-{stamp}.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
