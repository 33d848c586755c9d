#!/usr/bin/env python3
"""Recipient-check benchmark: RCPT rate against 100,000 known recipients, Postern (a list
file; an LDAP directory with a warm cache) vs Postfix (relay_recipient_maps, hash), same run.

The recipients: user000000@corp.test ... (100,000, --users) exist; one RCPT in eleven is
for someone who does not (nobody000000@corp.test ...). bench/smtp_load --rcpt-file sends
them, shuffled, after one MAIL, --rcpts-per-mail at a time pipelined, then RSET; plain
SMTP on loopback (TLS would only add the same handshake cost to both). Counted: replies
per second (250 and 550 5.1.1 alike) and the latency of a whole batch, p50/p99.

  postern-file   [[accepted_domain]] corp.test authoritative, recipients = the list file
  postern-ldap   the same domain with recipients_ldap: a private slapd (slapd_fixture,
                 StartTLS, lab CA) holding the 100,000 people; one untimed pass over every
                 address first, so each answer is cached (positive and negative TTL 1 h)
  postfix        relay_domains = corp.test, relay_recipient_maps = hash:the list
                 (postmap), smtpd_recipient_restrictions = reject_unlisted_recipient;
                 error sleeps and junk/error limits off so 550s cost only the lookup, and
                 in_flow_delay 0 (the aborted transactions would otherwise be throttled)
Both log as they do by default: Postern's protocol log (every command), Postfix's
maillog_file (every refused RCPT).

Beside the rate: the list's cost in Postern (resident memory with the 100,000-address
list minus without it, both after start) and the time `postern reload` takes with it.

Results: bench/results/rcpt-<timestamp>.md and .json. Not a CTest test.

  bench/run_rcpt_bench.py [--postern BUILD/postern] [--load BUILD/bench/smtp_load]
                          [--users 100000] [--duration 10] [--sessions 1,8]
                          [--rcpts-per-mail 100] [--only postern-file|postern-ldap|postfix]
"""

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import postern_testlib as lib  # noqa: E402
import slapd_fixture  # noqa: E402
from run_accept_bench import find_smtp_load  # noqa: E402
from run_memory_bench import rss_kib  # noqa: E402


def known(i):
    return f"user{i:06d}@corp.test"


def write_lists(work, users):
    """users.txt (the list), rcpts.txt (what the load sends, shuffled), the Postfix map."""
    with open(os.path.join(work, "users.txt"), "w") as f:
        f.writelines(known(i) + "\n" for i in range(users))
    rcpts = [known(i) for i in range(users)] + [f"nobody{i:06d}@corp.test" for i in range(users // 10)]
    random.Random(5321).shuffle(rcpts)
    with open(os.path.join(work, "rcpts.txt"), "w") as f:
        f.writelines(a + "\n" for a in rcpts)
    with open(os.path.join(work, "relay_recipients"), "w") as f:
        f.writelines(known(i) + " OK\n" for i in range(users))


class PosternTarget:
    def __init__(self, name, work, domain_extra, extra=""):
        self.name = name
        cfg = lib.config_text(
            [lib.connector("bench", tls="none", max_inbound_connections_per_source=500, max_recipients=1000,
                           max_junk_commands=1000000)],
            server={"accepted_domains": []},
            send_connectors=[{"name": "hold", "address_spaces": ["*"], "smart_hosts": ["127.0.0.1:9"]}],
            extra='\n[[accepted_domain]]\nname = "corp.test"\ntype = "authoritative"\n' + domain_extra + extra)
        self.server = lib.start_postern(
            cfg, before_start=lambda base: shutil.copyfile(os.path.join(work, "users.txt"),
                                                           os.path.join(base, "users.txt")))
        self.port = self.server.port()

    def stop(self):
        self.server.stop()
        shutil.rmtree(self.server.base, ignore_errors=True)


class PostfixTarget:
    name = "postfix"

    def __init__(self, work):
        self.pf = lib.PostfixInstance({
            "relay_domains": "corp.test",
            "relay_recipient_maps": "hash:" + os.path.join(work, "relay_recipients"),
            "smtpd_relay_restrictions": "reject_unauth_destination",
            "smtpd_recipient_restrictions": "reject_unlisted_recipient",
            "smtpd_recipient_limit": "1000",
            "smtpd_soft_error_limit": "1000000",
            "smtpd_hard_error_limit": "1000000",
            "smtpd_error_sleep_time": "0s",
            "smtpd_junk_command_limit": "1000000",
            "default_process_limit": "300",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            "smtpd_client_recipient_rate_limit": "0",
            "relayhost": "[127.0.0.1]:9",
            "defer_transports": "smtp",
            # Each transaction with an accepted RCPT opens a queue file through cleanup;
            # with nothing delivered, in_flow_delay would pause each one a second once the
            # flow-control tokens run out (after about 300), measuring that, not the lookup.
            "in_flow_delay": "0s",
        })
        lib.run(["postmap", "-c", self.pf.conf, "hash:" + os.path.join(work, "relay_recipients")])
        self.pf.start()
        self.port = self.pf.port

    def stop(self):
        self.pf.stop()
        shutil.rmtree(self.pf.base, ignore_errors=True)


def load(args, port, sessions, rcpt_file, duration=None, count=None):
    cmd = [args.load, "--port", str(port), "--sessions", str(sessions), "--no-tls", "--json",
           "--rcpt-file", rcpt_file, "--rcpts-per-mail", str(args.rcpts_per_mail),
           "--from", "partner@elsewhere.test"]
    cmd += ["--count", str(count)] if count else ["--duration", str(duration)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"smtp_load failed ({p.returncode}): {p.stdout}{p.stderr}")


def measure(args, target, sessions, rcpt_file):
    r = load(args, target.port, sessions, rcpt_file, duration=args.duration)
    return {"server": target.name, "sessions": sessions, "replies_per_s": r["replies_per_s"],
            "known": r["accepted"], "refused": r["refused"], "batch_p50_ms": r["p50_ms"],
            "batch_p99_ms": r["p99_ms"], "first_error": r.get("first_error", "")}


def measure_each(args, target, sessions, rcpt_file):
    """One row per session count, printed as it comes; the target is stopped afterwards."""
    rows = []
    try:
        for n in sessions:
            rows.append(measure(args, target, n, rcpt_file))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        target.stop()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--postern", default=os.environ.get("POSTERN_BIN") or lib.postern_bin())
    ap.add_argument("--load", default=None)
    ap.add_argument("--users", type=int, default=100000)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--sessions", default="1,8")
    ap.add_argument("--rcpts-per-mail", type=int, default=100)
    ap.add_argument("--only", choices=["postern-file", "postern-ldap", "postfix"])
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    args.load = find_smtp_load(args.load)
    if args.postern:
        os.environ["POSTERN_BIN"] = args.postern
    sessions = [int(x) for x in args.sessions.split(",")]
    work = tempfile.mkdtemp(prefix="postern-rcpt-bench-")
    os.chmod(work, 0o755)
    write_lists(work, args.users)
    rcpt_file = os.path.join(work, "rcpts.txt")
    rows, meta = [], {}
    try:
        if args.only in (None, "postern-file"):
            meta.update(file_list_cost(work))
            rows += measure_each(args, PosternTarget("postern-file", work, 'recipients = "users.txt"\n'),
                                 sessions, rcpt_file)
        if args.only in (None, "postern-ldap"):
            rows += ldap_rows(args, work, sessions, rcpt_file, meta)
        if args.only in (None, "postfix"):
            rows += measure_each(args, PostfixTarget(work), sessions, rcpt_file)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta.update({"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 "host": platform.node(), "cpus": os.cpu_count(), "kernel": platform.release(),
                 "duration": args.duration, "users": args.users, "rcpts_per_mail": args.rcpts_per_mail})
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(args.out, f"rcpt-{stamp}.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    md = markdown(rows, meta)
    with open(os.path.join(args.out, f"rcpt-{stamp}.md"), "w") as f:
        f.write(md)
    print(md)


def file_list_cost(work):
    """Resident memory with the 100,000-address list minus with an empty one, after start,
    and the wall time of `postern reload` with the list."""
    rss = {}
    for name, text in (("empty", ""), ("full", None)):
        def put(base, text=text):
            if text is None:
                shutil.copyfile(os.path.join(work, "users.txt"), os.path.join(base, "list.txt"))
            else:
                with open(os.path.join(base, "list.txt"), "w") as f:
                    f.write(text)
        cfg = lib.config_text([lib.connector("bench", tls="none")], server={"accepted_domains": []},
                              send_connectors=[{"name": "hold", "address_spaces": ["*"],
                                                "smart_hosts": ["127.0.0.1:9"]}],
                              extra='\n[[accepted_domain]]\nname = "corp.test"\ntype = "authoritative"\n'
                                    'recipients = "list.txt"\n')
        server = lib.start_postern(cfg, before_start=put)
        try:
            rss[name] = rss_kib(server.pid)[0]
            if name == "full":
                t0 = time.monotonic()
                lib.run([os.environ["POSTERN_BIN"], "reload", "-c", server.config_file])
                rss["reload_s"] = round(time.monotonic() - t0, 3)
                rss["after_reload"] = rss_kib(server.pid)[0]
        finally:
            server.stop()
            shutil.rmtree(server.base, ignore_errors=True)
    return {"list_rss_mib": round((rss["full"] - rss["empty"]) / 1024, 1),
            "reload_with_list_s": rss["reload_s"],
            "rss_after_reload_mib": round(rss["after_reload"] / 1024, 1)}


def ldap_rows(args, work, sessions, rcpt_file, meta):
    people = "".join(slapd_fixture.person(f"user{i:06d}", mail=known(i)) for i in range(args.users))
    t0 = time.monotonic()
    slapd = slapd_fixture.Slapd(people)
    meta["slapadd_s"] = round(time.monotonic() - t0, 1)
    slapd.start()
    try:
        target = PosternTarget("postern-ldap", work, 'recipients_ldap = "corp-directory"\n',
                               slapd.source_toml(filter="(mail=%s)", attributes=("mail",),
                                                 extra='positive_ttl = "1h"\nnegative_ttl = "1h"\nconnections = 4\n'))
        try:
            with open(rcpt_file) as f:
                everyone = sum(1 for _ in f)
            t0 = time.monotonic()
            warm = load(args, target.port, 8, rcpt_file, count=everyone)
        except BaseException:
            target.stop()
            raise
        meta["ldap_warm_up"] = {"replies": warm["accepted"] + warm["refused"], "known": warm["accepted"],
                                "seconds": round(time.monotonic() - t0, 1), "replies_per_s": warm["replies_per_s"]}
        return measure_each(args, target, sessions, rcpt_file)
    finally:
        slapd.remove_files()


def markdown(rows, meta):
    out = [f"# Recipient-check benchmark, {meta['date']}", "",
           f"Host: {meta['host']}, {meta['cpus']} CPUs, kernel {meta['kernel']}. {meta['users']:,} known "
           f"recipients; one RCPT in eleven for an unknown one (550 5.1.1). Each row: {meta['duration']} s of "
           f"RCPTs, {meta['rcpts_per_mail']} pipelined per MAIL, then RSET; plain SMTP on loopback; the load "
           "generator shares the machine. Both servers log as by default: Postfix a line per refused RCPT; "
           "Postern's protocol log every command, up to its flood limit of 1,000 lines per session between "
           "messages (so in this pattern it logs little after the first batches).", "",
           "| server | sessions | RCPT replies/s | known (250) | unknown (550) | batch p50 ms | batch p99 ms |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['server']} | {r['sessions']} | {r['replies_per_s']:.0f} | {r['known']} | {r['refused']} | "
                   f"{r['batch_p50_ms']:.2f} | {r['batch_p99_ms']:.2f} |")
    by = {(r["server"], r["sessions"]): r["replies_per_s"] for r in rows}
    ratios = [f"{s} at {n} session(s): {by[(s, n)] / by[('postfix', n)]:.1f}x Postfix"
              for (s, n) in by if s != "postfix" and ("postfix", n) in by and by[("postfix", n)]]
    if ratios:
        out += ["", "Ratios: " + "; ".join(ratios) + "."]
    if "list_rss_mib" in meta:
        out += ["", f"The {meta['users']:,}-address list in Postern: {meta['list_rss_mib']} MiB resident (with the list "
                    f"minus with an empty one, after start); `postern reload` with it: {meta['reload_with_list_s']} s."]
    if "ldap_warm_up" in meta:
        w = meta["ldap_warm_up"]
        out += ["", f"LDAP warm-up (untimed above, cold cache, 8 sessions): {w['replies']} RCPTs in {w['seconds']} s "
                    f"({w['replies_per_s']:.0f}/s, slapd on the same machine); slapadd of the directory: "
                    f"{meta.get('slapadd_s')} s."]
    errors = [r for r in rows if r.get("first_error") and "5.1.1" not in r["first_error"]]
    if errors:
        out += ["", "Unexpected replies:", ""] + [f"- {r['server']} {r['sessions']}: `{r['first_error']}`" for r in errors]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
