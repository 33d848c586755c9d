#!/usr/bin/env python3
"""Relay benchmark: load generator -> middle server -> TLS sink, Postern vs Postfix in the middle.

    bench/relay_load --STARTTLS required--> middle --STARTTLS required--> bench/tls_sink

Middle servers:
  Postern   receive connector with require_tls = true; one send connector for "*" with
            smart_hosts = the sink, require_tls = true, tls_auth_level = "domain_validation",
            tls_domain = mx.postern.test (the sink's certificate from the test CA),
            max_per_destination = 64. Every commit is a synced write before the 250.
  Postfix   smtpd_tls_security_level = encrypt; relayhost = [127.0.0.1]:<sink>,
            smtp_tls_security_level = secure with smtp_tls_CAfile = the test CA (policy
            entry matching mx.postern.test), default_destination_concurrency_limit = 64.
            Durability is Postfix's default (cleanup fsyncs the queue file before 250).
Both present the same test certificate to the load generator.

Per cell (server x size x sessions x connection mode), with a fresh sink and a fresh
middle server (empty queue):
  - wait (bounded, polling) until the 1-minute load average is below --max-load; the
    load at the start is written in the results
  - relay_load submits --count messages (or for --duration seconds); each message carries a send timestamp
    (CLOCK_MONOTONIC) and an id, and the sink records its arrival time
  - then wait (bounded by --drain-timeout) until the sink holds every accepted message
  - end-to-end rate   distinct messages at the sink / (last arrival - first send)
  - latency           p50/p99 of (arrival at the sink - send stamp), and the client's own
                      per-transaction p50/p99
  - CPU per message   user+system of the middle server's processes from just before the
                      load to the last arrival, per delivered message (Postfix: master, live
                      descendants and reaped children, as bench/run_accept_bench.py counts it)
  - peak memory       Postern: VmHWM; Postfix: sum of each process's VmHWM (sampled every
                      0.2 s, so short-lived processes may be missed) and the peak of the
                      sampled simultaneous VmRSS sum
Targets (reuse, 64 sessions): Postern >= 5x Postfix's rate and <= 1/5 of its CPU/message.

Results: bench/results/relay-<timestamp>.md and .json. Not a CTest test.

  bench/run_relay_bench.py [--build BUILD] [--count 2000 | --count 0 --duration 8] [--sessions 1,16,64]
                           [--sizes 1024,102400] [--modes reuse,per-message]
                           [--only postern|postfix] [--max-load 1.5] [--load-wait 120] [--repeat 1]
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import run_accept_bench as accept  # noqa: E402  (process accounting, testlib import)

lib = accept.lib

SINK_NAME = lib.SERVER_NAME                      # the sink presents the mx.postern.test certificate


# --------------------------------------------------------------------------- machine state

def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def wait_quiet(max_load, bound):
    """Polls the 1-minute load average until it is below max_load or `bound` seconds pass.
    Returns (load when the cell starts, seconds waited)."""
    t0 = time.monotonic()
    while True:
        la = loadavg()
        if la < max_load or time.monotonic() - t0 >= bound:
            return la, round(time.monotonic() - t0, 1)
        time.sleep(2)


def proc_status(pid):
    """(VmHWM, VmRSS) in KiB, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    hwm = rss = 0
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
        elif line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return hwm, rss


def start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except OSError:
        return None


class MemorySampler:
    """Samples the middle server's processes: per process (pid, start time) the highest
    VmHWM seen, and the highest simultaneous sum of VmRSS."""

    def __init__(self, target, interval=0.2):
        self.target = target
        self.interval = interval
        self.hwm = {}
        self.peak_rss_sum = 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.sample()
        self.thread.start()
        return self

    def sample(self):
        total = 0
        for p in self.target.pids():
            st = proc_status(p)
            if st is None:
                continue
            key = (p, start_time(p))
            self.hwm[key] = max(self.hwm.get(key, 0), st[0])
            total += st[1]
        self.peak_rss_sum = max(self.peak_rss_sum, total)

    def _run(self):
        while not self.stop_flag.wait(self.interval):
            self.sample()

    def stop(self):
        self.stop_flag.set()
        self.thread.join(timeout=5)
        self.sample()
        return sum(self.hwm.values()), self.peak_rss_sum, len(self.hwm)


# --------------------------------------------------------------------------- the sink

class Sink:
    def __init__(self, binary, pki):
        self.dir = tempfile.mkdtemp(prefix="postern-sink-")
        self.port_file = os.path.join(self.dir, "port")
        self.status_file = os.path.join(self.dir, "status")
        self.summary_file = os.path.join(self.dir, "summary.json")
        self.stderr = open(os.path.join(self.dir, "stderr"), "wb")
        self.proc = subprocess.Popen(
            [binary, "--cert", pki.path("server.pem"), "--key", pki.path("server.key"),
             "--port", "0", "--port-file", self.port_file, "--status", self.status_file,
             "--summary", self.summary_file, "--hostname", "sink.postern.test"],
            stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr,
            start_new_session=True)
        lib.wait_until(lambda: os.path.exists(self.port_file) or self.proc.poll() is not None,
                       10, what="the sink's port file")
        if self.proc.poll() is not None:
            raise RuntimeError(f"tls_sink exited: {open(self.stderr.name).read()}")
        self.port = int(open(self.port_file).read())

    def status(self):
        """(messages, distinct, last arrival ns) so far."""
        try:
            m, d, last = open(self.status_file).read().split()
            return int(m), int(d), int(last)
        except (OSError, ValueError):
            return 0, 0, 0

    def stop(self):
        """SIGTERM (summary written on it) and the summary."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.stderr.close()
        try:
            with open(self.summary_file) as f:
                summary = json.load(f)
        except (OSError, ValueError):
            summary = None
        shutil.rmtree(self.dir, ignore_errors=True)
        return summary


# --------------------------------------------------------------------------- middle servers

class PosternMiddle(accept.Target):
    name = "postern"

    def __init__(self, sink_port, max_per_destination=64):
        cfg = lib.config_text(
            [lib.connector("bench", require_tls=True, max_inbound_connections_per_source=500,
                           connection_inactivity_timeout="5m")],
            server={"max_inbound_connections": 2000, "max_connections_per_source": 500,
                    "max_outbound_connections": 200},
            queue={"min_free": "100MB"},
            send_connectors=[{"name": "relay", "address_spaces": ["*"],
                              "smart_hosts": [f"127.0.0.1:{sink_port}"],
                              "require_tls": True,
                              "tls_auth_level": "domain_validation",
                              "tls_domain": SINK_NAME,
                              "max_per_destination": max_per_destination}])
        self.server = lib.start_postern(cfg)
        self.port = self.server.port()

    def pids(self):
        return [self.server.pid]

    def left_in_queue(self):
        q = self.server.queue_list()
        return None if q is None else len(q)

    def stop(self):
        try:
            self.server.stop()
        finally:
            shutil.rmtree(self.server.base, ignore_errors=True)


class PostfixMiddle(accept.Target):
    name = "postfix"

    def __init__(self, sink_port, pki, concurrency=64):
        self.pf = lib.PostfixInstance({
            "smtpd_tls_security_level": "encrypt",
            "smtpd_tls_cert_file": pki.path("server.pem"),
            "smtpd_tls_key_file": pki.path("server.key"),
            "smtpd_tls_loglevel": "0",
            "smtpd_tls_mandatory_protocols": ">=TLSv1.2",
            "smtpd_tls_protocols": ">=TLSv1.2",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "default_process_limit": "300",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            "smtpd_client_message_rate_limit": "0",
            "in_flow_delay": "0s",
            "message_size_limit": str(40 * 1024 * 1024),
            "relayhost": f"[127.0.0.1]:{sink_port}",
            "smtp_tls_security_level": "secure",
            "smtp_tls_CAfile": pki.ca,
            "smtp_tls_loglevel": "0",
            "smtp_tls_policy_maps": "texthash:${config_directory}/tls_policy",
            "default_destination_concurrency_limit": str(concurrency),
            "smtp_destination_concurrency_limit": str(concurrency),
        })
        with open(os.path.join(self.pf.conf, "tls_policy"), "w") as f:
            # the relayhost is an address: name the certificate identity to match
            f.write(f"[127.0.0.1]:{sink_port} secure match={SINK_NAME}\n")
        self.pf.start()
        self.port = self.pf.port

    def pids(self):
        return accept.tree(self.pf.master_pid())

    def left_in_queue(self):
        n = 0
        for sub in ("incoming", "active", "deferred", "hold"):
            for _, _, files in os.walk(os.path.join(self.pf.queue, sub)):
                n += len(files)
        return n

    def stop(self):
        self.pf.stop()
        shutil.rmtree(self.pf.base, ignore_errors=True)


# --------------------------------------------------------------------------- one cell

def run_load(args, port, sessions, size, per_message):
    cmd = [args.load, "--port", str(port), "--sessions", str(sessions), "--size", str(size),
           "--ca", lib.pki().ca, "--sni", lib.SERVER_NAME, "--json"]
    cmd += ["--count", str(args.count)] if args.count else ["--duration", str(args.duration)]
    if per_message:
        cmd.append("--per-message")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"relay_load failed ({p.returncode}): {p.stdout}{p.stderr}")


def start_profile(args, target, name, size, sessions, per_message):
    """perf record of the middle server's processes for the cell (--profile DIR); the
    report is written next to the data when the cell ends."""
    if not args.profile:
        return None
    os.makedirs(args.profile, exist_ok=True)
    base = os.path.join(args.profile, f"{name}-{'pm' if per_message else 'reuse'}-{sessions}-{size}")
    cmd = ["perf", "record", "--call-graph", os.environ.get("BENCH_CALLGRAPH", "fp"), "-o", base + ".data", "-p", ",".join(str(p) for p in target.pids())]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, base


def stop_profile(profiler):
    if profiler is None:
        return
    proc, base = profiler
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    with open(base + ".txt", "w") as out:
        subprocess.run(["perf", "report", "-i", base + ".data", "--no-children", "--sort", "dso,symbol",
                        "--stdio", "-g", "none", "--percent-limit", "0.5"], stdout=out, stderr=subprocess.DEVNULL)


def measure(args, name, size, sessions, per_message):
    load_at_start, waited = wait_quiet(args.max_load, args.load_wait)
    pki = lib.pki()
    sink = Sink(args.sink, pki)
    target = None
    summary = None
    try:
        target = PosternMiddle(sink.port) if name == "postern" else PostfixMiddle(sink.port, pki)
        mem = MemorySampler(target).start()
        profiler = start_profile(args, target, name, size, sessions, per_message)
        cpu0 = target.cpu()
        r = run_load(args, target.port, sessions, size, per_message)
        accepted = r["accepted"]
        drained = True
        try:
            lib.wait_until(lambda: sink.status()[1] >= accepted, args.drain_timeout, interval=0.05,
                           what="every accepted message at the sink")
        except TimeoutError:
            drained = False
        cpu1 = target.cpu()
        stop_profile(profiler)
        hwm_sum, rss_peak, nprocs = mem.stop()
        if name == "postern":
            st = proc_status(target.server.pid)
            hwm_sum = max(hwm_sum, st[0] if st else 0)
        left = target.left_in_queue() if not drained else 0
    finally:
        summary = sink.stop()
        if target is not None:
            target.stop()
    summary = summary or {}
    distinct = summary.get("distinct", 0)
    span_s = (summary.get("last_arrival_ns", 0) - r["start_ns"]) / 1e9 if distinct else 0
    row = {
        "server": name, "size": size, "sessions": sessions,
        "mode": "per-message" if per_message else "reuse",
        "load_1m": load_at_start, "load_wait_s": waited,
        "accepted": accepted, "refused": r["refused"], "setup_failures": r["setup_failures"],
        "broken_sessions": r["broken_sessions"],
        "delivered": distinct, "duplicates": summary.get("duplicates"),
        "unstamped": summary.get("unstamped"), "drained": drained,
        "left_in_queue": left,
        "submit_s": r["elapsed_s"], "end_to_end_s": round(span_s, 3),
        "accept_per_s": r["messages_per_s"],
        "messages_per_s": round(distinct / span_s, 1) if span_s > 0 else 0,
        "e2e_p50_ms": summary.get("latency_p50_ms"), "e2e_p99_ms": summary.get("latency_p99_ms"),
        "e2e_max_ms": summary.get("latency_max_ms"),
        "client_p50_ms": r["p50_ms"], "client_p99_ms": r["p99_ms"],
        "cpu_s": round(cpu1 - cpu0, 3),
        "cpu_ms_per_message": round(1000 * (cpu1 - cpu0) / distinct, 3) if distinct else None,
        "peak_mem_kib": hwm_sum, "peak_rss_sum_kib": rss_peak, "processes_seen": nprocs,
        "sink_sessions": summary.get("sessions"), "sink_refused_plaintext": summary.get("refused_plaintext"),
        "first_error": r.get("first_error", ""),
    }
    return row


# --------------------------------------------------------------------------- report

def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def combined(rows):
    """One row per (server, size, sessions, mode): with --repeat, the median rate, CPU and
    memory over the repetitions (and the range of the rate), the rest from the median run."""
    groups = {}
    for r in rows:
        groups.setdefault((r["server"], r["size"], r["sessions"], r["mode"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["messages_per_s"])
        row = dict(rs[len(rs) // 2])
        row["messages_per_s"] = median([r["messages_per_s"] for r in rs])
        cpus = [r["cpu_ms_per_message"] for r in rs if r["cpu_ms_per_message"]]
        row["cpu_ms_per_message"] = median(cpus) if cpus else None
        row["peak_mem_kib"] = median([r["peak_mem_kib"] for r in rs])
        row["runs"] = len(rs)
        row["rate_range"] = [rs[0]["messages_per_s"], rs[-1]["messages_per_s"]]
        out[key] = row
    return out


def ratios(rows):
    """Postern/Postfix at each (size, sessions, mode) where both ran (medians with --repeat)."""
    out = []
    by = combined(rows)
    for (srv, size, sessions, mode), pr in by.items():
        if srv != "postern":
            continue
        pf = by.get(("postfix", size, sessions, mode))
        if not pf:
            continue
        rate = pr["messages_per_s"] / pf["messages_per_s"] if pf["messages_per_s"] else None
        cpu = (pr["cpu_ms_per_message"] / pf["cpu_ms_per_message"]
               if pr["cpu_ms_per_message"] and pf["cpu_ms_per_message"] else None)
        mem = pr["peak_mem_kib"] / pf["peak_mem_kib"] if pf["peak_mem_kib"] else None
        target = mode == "reuse" and sessions == 64
        out.append({"size": size, "sessions": sessions, "mode": mode, "runs": min(pr["runs"], pf["runs"]),
                    "postern_rate_range": pr["rate_range"], "postfix_rate_range": pf["rate_range"],
                    "rate_ratio": round(rate, 2) if rate else None,
                    "cpu_ratio": round(cpu, 3) if cpu else None,
                    "mem_ratio": round(mem, 3) if mem else None,
                    "target_cell": target,
                    "rate_target_met": (rate is not None and rate >= 5) if target else None,
                    "cpu_target_met": (cpu is not None and cpu <= 0.2) if target else None})
    return out


def markdown(rows, rat, meta):
    f = lambda v, spec: "n/a" if v is None else format(v, spec)
    out = [f"# Relay benchmark, {meta['date']}", "",
           f"Host: {meta['host']}, {meta['cpus']} CPUs, kernel {meta['kernel']}. Chain: relay_load "
           "--STARTTLS required--> middle --STARTTLS required (certificate verified: Postern "
           "domain_validation, Postfix secure)--> tls_sink, all on loopback; load generator, sink "
           "and middle share the machine. "
           "Each cell: " + (f"{meta['count']} messages" if meta.get("count") else
                            f"{meta['duration']} s of submission") + ", then until the sink holds every "
           "accepted message. Rate = distinct messages at the sink / (last arrival - first send). "
           "e2e latency = arrival at the sink - send stamp (reuse: stamped at MAIL; per-message: "
           "stamped at connect). CPU = the middle server's processes over the whole cell, per "
           "delivered message. Memory: Postern VmHWM; Postfix sum of per-process VmHWM "
           "(sampled every 0.2 s). Load = 1-minute load average when the cell started "
           f"(waited up to {meta['load_wait']} s for < {meta['max_load']}). "
           + (f"Each cell ran {meta['repeat']} times, Postern and Postfix alternating; the ratios "
              "compare medians." if meta.get("repeat", 1) > 1 else ""), "",
           "| server | mode | sessions | size | msgs/s | e2e p50 ms | e2e p99 ms | client p50 ms | "
           "client p99 ms | CPU ms/msg | peak mem MiB | delivered/accepted | load |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['server']} | {r['mode']} | {r['sessions']} | {r['size'] // 1024} KiB | "
                   f"{r['messages_per_s']:.0f} | {f(r['e2e_p50_ms'], '.1f')} | {f(r['e2e_p99_ms'], '.1f')} | "
                   f"{r['client_p50_ms']:.1f} | {r['client_p99_ms']:.1f} | "
                   f"{f(r['cpu_ms_per_message'], '.3f')} | {r['peak_mem_kib'] / 1024:.1f} | "
                   f"{r['delivered']}/{r['accepted']}{'' if r['drained'] else ' (not drained)'} | "
                   f"{r['load_1m']:.2f} |")
    if rat:
        out += ["", "Postern / Postfix (targets at reuse, 64 sessions: rate >= 5, CPU/msg <= 0.2):", "",
                "| mode | sessions | size | runs | Postern msgs/s (range) | Postfix msgs/s (range) | rate ratio | "
                "CPU/msg ratio | memory ratio | targets |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for x in rat:
            t = ""
            if x["target_cell"]:
                t = (f"rate {'met' if x['rate_target_met'] else 'MISSED'}, "
                     f"CPU {'met' if x['cpu_target_met'] else 'MISSED'}")
            pr, pf = x["postern_rate_range"], x["postfix_rate_range"]
            out.append(f"| {x['mode']} | {x['sessions']} | {x['size'] // 1024} KiB | {x['runs']} | "
                       f"{pr[0]:.0f}-{pr[1]:.0f} | {pf[0]:.0f}-{pf[1]:.0f} | "
                       f"{f(x['rate_ratio'], '.2f')} | {f(x['cpu_ratio'], '.3f')} | "
                       f"{f(x['mem_ratio'], '.3f')} | {t} |")
    errors = [r for r in rows if r.get("first_error")]
    if errors:
        out += ["", "First client error per cell:", ""]
        out += [f"- {r['server']} {r['mode']} {r['sessions']}x{r['size']}: `{r['first_error']}`"
                for r in errors]
    return "\n".join(out) + "\n"


def write_results(args, rows, meta, stamp):
    os.makedirs(args.out, exist_ok=True)
    rat = ratios(rows)
    with open(os.path.join(args.out, f"relay-{stamp}.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows, "ratios": rat}, f, indent=2)
    md = markdown(rows, rat, meta)
    with open(os.path.join(args.out, f"relay-{stamp}.md"), "w") as f:
        f.write(md)
    return md


def find_build(explicit):
    for d in ([explicit] if explicit else []) + [os.path.join(REPO, b) for b in
                                                 ("build-relay", "build", "build-it")]:
        if d and os.path.exists(os.path.join(d, "bench", "tls_sink")):
            return d
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=None, help="build directory (postern, bench/relay_load, bench/tls_sink)")
    ap.add_argument("--count", type=int, default=2000,
                    help="messages per cell (0: submit for --duration seconds instead)")
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--drain-timeout", type=float, default=120)
    ap.add_argument("--sessions", default="1,16,64")
    ap.add_argument("--sizes", default="1024,102400")
    ap.add_argument("--modes", default="reuse,per-message")
    ap.add_argument("--only", choices=["postern", "postfix"])
    ap.add_argument("--max-load", type=float, default=1.5)
    ap.add_argument("--load-wait", type=float, default=120)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure each cell this many times (servers alternating); ratios compare medians")
    ap.add_argument("--profile", default=None,
                    help="directory: perf record the middle server during each cell (needs perf)")
    args = ap.parse_args()
    build = find_build(args.build)
    if build is None:
        sys.exit("not built: cmake --build BUILD --target postern tls_sink relay_load")
    args.sink = os.path.join(build, "bench", "tls_sink")
    args.load = os.path.join(build, "bench", "relay_load")
    os.environ["POSTERN_BIN"] = os.path.join(build, "postern")
    sessions = [int(x) for x in args.sessions.split(",")]
    sizes = [int(x) for x in args.sizes.split(",")]
    modes = args.modes.split(",")
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "host": platform.node(), "cpus": os.cpu_count(), "kernel": platform.release(),
            "count": args.count, "duration": args.duration, "max_load": args.max_load, "load_wait": args.load_wait,
            "build": build, "repeat": args.repeat}
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    rows = []
    # the target cells (reuse, 64 sessions) first, so a shortened run still answers them
    cells = [(m, n, s) for m in modes for n in sorted(sessions, reverse=True) for s in sizes]
    for mode, n, size in cells:
        for name in ("postern", "postfix") * args.repeat:
            if args.only and args.only != name:
                continue
            try:
                row = measure(args, name, size, n, mode == "per-message")
            except Exception as e:   # a failed cell is reported, the run goes on
                row = {"server": name, "size": size, "sessions": n, "mode": mode, "error": str(e)}
                print(json.dumps(row), flush=True)
                continue
            rows.append(row)
            print(json.dumps(row), flush=True)
            write_results(args, rows, meta, stamp)       # partial results survive an abort
    print(write_results(args, rows, meta, stamp))


if __name__ == "__main__":
    main()
