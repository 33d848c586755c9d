// bench/relay_load.cpp: the submitting side of the relay benchmark (bench/run_relay_bench.py).
//
// Like bench/smtp_load (EHLO, STARTTLS, EHLO, then MAIL/RCPT/DATA, pipelined when the
// server advertises PIPELINING), with two additions a relay measurement needs:
//   - every message is stamped: its first header lines are
//         X-Relay-Sent: <id> <send-time>
//         Message-ID: <<id>.<send-time>@relay-load.test>
//     with a distinct id per message and send-time = CLOCK_MONOTONIC nanoseconds
//     (std::chrono::steady_clock) when the client started on that message, so the sink at
//     the end of the chain (bench/tls_sink) measures submission-to-arrival latency;
//   - --per-message: one connection per message (connect, banner, EHLO, STARTTLS,
//     handshake, EHLO, one transaction, QUIT), instead of reusing each session's
//     connection for message after message. The send-time is then the connect time.
// The stamp lines have a fixed width, so every message has exactly --size octets.
//
//   relay_load --port P [--host 127.0.0.1] [--sessions 16] [--size 1024]
//              [--duration 10 | --count 1000] [--per-message] [--ca ca.pem --sni NAME]
//              [--no-pipelining] [--to bob@example.test] [--from alice@client.test] [--json]
//
// Reports messages accepted (250 after the dot), acceptance rate, the client-side
// latency per message (reuse: MAIL sent -> 250; per message: connect -> 250), its own CPU,
// and start_ns/end_ns (steady clock) so the caller can relate them to arrival times.
// One thread runs every session. Exit status 0 when at least one message was accepted and
// no session failed to set up, 1 otherwise, 2 on bad usage.
#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/resource.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <fmt/format.h>

#include "smtp_client_common.hpp"

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

using namespace bench;   // reply, read_reply, command, expect, advertises, percentile

struct options {
    std::string host = "127.0.0.1";
    std::string port;
    int sessions = 1;
    std::size_t size = 1024;
    double duration = 10;
    long count = 0;
    bool per_message = false;
    std::string ca, sni;
    bool pipelining = true;
    std::string from = "alice@client.test";
    std::string to = "bob@example.test";
    std::string helo = "relay-load.client.test";
    bool json = false;
};

struct shared_state {
    options opt;
    std::string rest;                     // the message after the stamp lines, with ".\r\n"
    clock_type::time_point start, deadline;
    double cpu_start = 0;
    long tickets = 0;
    std::uint64_t next_id = 1;
    int not_ready = 0;
    std::optional<asio::steady_timer> gate;
    std::vector<double> latencies_ms;
    long accepted = 0, refused = 0, setup_failures = 0, broken = 0, pipelined_sessions = 0;
    long connections = 0;
    std::string first_error;
};

std::int64_t ns_of(clock_type::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

std::string stamp(std::uint64_t id, std::int64_t ns) {
    return fmt::format("X-Relay-Sent: {:010} {:020}\r\nMessage-ID: <{:010}.{:020}@relay-load.test>\r\n",
                       id, ns, id, ns);
}

void note_error(shared_state& s, const std::string& what) {
    if (s.first_error.empty()) s.first_error = what;
}

// Everything after the stamp lines: header, blank line, body, final dot; the whole
// message (stamp included, dot excluded) is `size` octets when size allows.
std::string make_rest(std::size_t size, const options& o) {
    std::string m = fmt::format("From: <{}>\r\nTo: <{}>\r\nSubject: relay load\r\n\r\n", o.from, o.to);
    const std::size_t stamp_size = stamp(0, 0).size();
    const std::size_t want = size > stamp_size ? size - stamp_size : 0;
    const std::string line(76, 'x');
    while (m.size() + 78 <= want) m += line + "\r\n";
    if (m.size() + 2 < want) m += std::string(want - m.size() - 2, 'y') + "\r\n";
    return m + ".\r\n";
}
// Takes the next message: its id, or 0 when the run is over.
std::uint64_t take(shared_state& s) {
    if (s.opt.count > 0) {
        if (s.tickets <= 0) return 0;
        --s.tickets;
    } else if (clock_type::now() >= s.deadline) {
        return 0;
    }
    return s.next_id++;
}

// One MAIL/RCPT/DATA transaction of message `id` stamped `t0`. Returns the final reply
// (250 = accepted).
template <class Stream>
awaitable<reply> transaction(Stream& stream, std::string& buf, shared_state& s, bool pipelined,
                             std::uint64_t id, clock_type::time_point t0) {
    const std::string mail = fmt::format("MAIL FROM:<{}> SIZE={}", s.opt.from, s.opt.size);
    const std::string rcpt = fmt::format("RCPT TO:<{}>", s.opt.to);
    const std::string head = stamp(id, ns_of(t0));
    reply r;
    if (pipelined) {
        const std::string group = mail + "\r\n" + rcpt + "\r\nDATA\r\n";
        co_await write_all(stream, asio::buffer(group));
        reply rm = co_await read_reply(stream, buf);
        reply rr = co_await read_reply(stream, buf);
        r = co_await read_reply(stream, buf);
        if (r.code == 354) {
            co_await write_all(stream, asio::buffer(head));
            co_await write_all(stream, asio::buffer(s.rest));
            r = co_await read_reply(stream, buf);
            if (r.code == 250 && (rm.code != 250 || rr.code != 250)) r = rm.code != 250 ? rm : rr;
            co_return r;
        }
        if (rm.code != 250) r = rm;
        else if (rr.code != 250) r = rr;
        co_return r;
    }
    r = co_await command(stream, buf, mail);
    if (r.code != 250) co_return r;
    r = co_await command(stream, buf, rcpt);
    if (r.code != 250) co_return r;
    r = co_await command(stream, buf, "DATA");
    if (r.code != 354) co_return r;
    co_await write_all(stream, asio::buffer(head));
    co_await write_all(stream, asio::buffer(s.rest));
    co_return co_await read_reply(stream, buf);
}

void record(shared_state& s, clock_type::time_point t0) {
    s.latencies_ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
    ++s.accepted;
}

// Returns false (and counts) when the reply means the session should stop.
template <class Stream>
awaitable<bool> after_refusal(Stream& stream, std::string& buf, shared_state& s, const reply& r) {
    ++s.refused;
    note_error(s, r.text);
    if (r.code == 421 || r.code == 0) co_return false;
    if (r.code >= 400) {
        reply rr = co_await command(stream, buf, "RSET");
        co_return rr.code == 250;
    }
    co_return true;
}

// Connect, banner, EHLO, STARTTLS, handshake, EHLO. The TLS stream is built in `tls`.
awaitable<std::string> open_session(shared_state& s, ssl::context& ctx, tcp::socket& sock,
                                    std::optional<postern::tls::stream>& tls, std::string& buf) {
    auto ex = co_await asio::this_coro::executor;
    tcp::resolver resolver(ex);
    auto endpoints = co_await resolver.async_resolve(s.opt.host, s.opt.port, use_awaitable);
    co_await asio::async_connect(sock, endpoints, use_awaitable);
    sock.set_option(tcp::no_delay(true));
    ++s.connections;
    expect(co_await read_reply(sock, buf), 220, "banner");
    reply ehlo = co_await command(sock, buf, "EHLO " + s.opt.helo);
    expect(ehlo, 250, "EHLO");
    expect(co_await command(sock, buf, "STARTTLS"), 220, "STARTTLS");
    if (!buf.empty()) throw setup_error("bytes after 220 to STARTTLS");
    tls.emplace(sock, SSL_new(ctx.native_handle()));
    if (!s.opt.sni.empty()) {
        SSL_set_tlsext_host_name(tls->native_handle(), s.opt.sni.c_str());
        if (!s.opt.ca.empty()) SSL_set1_host(tls->native_handle(), s.opt.sni.c_str());
    }
    if (auto [ec] = co_await tls->handshake(postern::tls::stream::role::client); ec) throw setup_error("TLS handshake: " + ec.message());
    ehlo = co_await command(*tls, buf, "EHLO " + s.opt.helo);
    expect(ehlo, 250, "EHLO after STARTTLS");
    co_return ehlo.text;
}

awaitable<void> wait_gate(shared_state& s) {
    if (--s.not_ready == 0) {
        s.start = clock_type::now();
        s.cpu_start = own_cpu_seconds();
        s.deadline = s.start + std::chrono::duration_cast<clock_type::duration>(
                                   std::chrono::duration<double>(s.opt.duration));
        s.gate->cancel();
        co_return;
    }
    boost::system::error_code ec;
    co_await s.gate->async_wait(asio::redirect_error(use_awaitable, ec));
}

// A session that reuses its connection for message after message.
awaitable<void> reuse_session(shared_state& s, ssl::context& ctx) {
    auto ex = co_await asio::this_coro::executor;
    bool ready = false;
    try {
        tcp::socket sock(ex);
        std::optional<postern::tls::stream> tls;
        std::string buf;
        std::string ehlo = co_await open_session(s, ctx, sock, tls, buf);
        const bool pipelined = s.opt.pipelining && advertises(ehlo, "PIPELINING");
        if (pipelined) ++s.pipelined_sessions;
        ready = true;
        co_await wait_gate(s);
        for (;;) {
            std::uint64_t id = take(s);
            if (id == 0) break;
            auto t0 = clock_type::now();
            reply r = co_await transaction(*tls, buf, s, pipelined, id, t0);
            if (r.code == 250) {
                record(s, t0);
                continue;
            }
            if (!co_await after_refusal(*tls, buf, s, r)) co_return;
        }
        co_await command(*tls, buf, "QUIT");
        co_await tls->shutdown();
    } catch (const setup_error& e) {
        ++s.setup_failures;
        note_error(s, e.what());
    } catch (const std::exception& e) {
        if (ready) ++s.broken; else ++s.setup_failures;
        note_error(s, e.what());
    }
    if (!ready) co_await wait_gate(s);
}

// A worker that opens one connection per message.
awaitable<void> per_message_worker(shared_state& s, ssl::context& ctx) {
    auto ex = co_await asio::this_coro::executor;
    co_await wait_gate(s);
    long failures_in_a_row = 0;
    for (;;) {
        std::uint64_t id = take(s);
        if (id == 0) break;
        auto t0 = clock_type::now();
        try {
            tcp::socket sock(ex);
            std::optional<postern::tls::stream> tls;
            std::string buf;
            std::string ehlo = co_await open_session(s, ctx, sock, tls, buf);
            const bool pipelined = s.opt.pipelining && advertises(ehlo, "PIPELINING");
            if (pipelined) ++s.pipelined_sessions;
            reply r = co_await transaction(*tls, buf, s, pipelined, id, t0);
            if (r.code == 250) record(s, t0);
            else {
                ++s.refused;
                note_error(s, r.text);
            }
            co_await command(*tls, buf, "QUIT");
            boost::system::error_code ec;
            sock.shutdown(tcp::socket::shutdown_both, ec);
            failures_in_a_row = 0;
        } catch (const std::exception& e) {
            ++s.setup_failures;
            note_error(s, e.what());
            if (++failures_in_a_row >= 50) co_return;
        }
    }
}

int usage(const char* msg) {
    std::fprintf(stderr, "relay_load: %s\n", msg);
    std::fprintf(stderr,
                 "usage: relay_load --port P [--host H] [--sessions N] [--size BYTES] "
                 "[--duration SECONDS | --count M] [--per-message] [--ca FILE] [--sni NAME] "
                 "[--no-pipelining] [--from A] [--to A] [--json]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--json") { o.json = true; continue; }
        if (a == "--per-message") { o.per_message = true; continue; }
        if (a == "--no-pipelining") { o.pipelining = false; continue; }
        if (a == "--help") return usage("help"), 0;
        if (i + 1 >= argc) return usage("missing value");
        const char* v = argv[++i];
        if (a == "--host") o.host = v;
        else if (a == "--port") o.port = v;
        else if (a == "--sessions") o.sessions = std::atoi(v);
        else if (a == "--size") o.size = std::strtoull(v, nullptr, 10);
        else if (a == "--duration") o.duration = std::atof(v);
        else if (a == "--count") o.count = std::atol(v);
        else if (a == "--ca") o.ca = v;
        else if (a == "--sni") o.sni = v;
        else if (a == "--from") o.from = v;
        else if (a == "--to") o.to = v;
        else if (a == "--helo") o.helo = v;
        else return usage("unknown option");
    }
    if (o.port.empty() || o.sessions < 1) return usage("--port and --sessions >= 1 are required");

    asio::io_context io(1);
    ssl::context ctx(ssl::context::tls_client);
    ctx.set_options(ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    if (!o.ca.empty()) {
        ctx.load_verify_file(o.ca);
        ctx.set_verify_mode(ssl::verify_peer);
    } else {
        ctx.set_verify_mode(ssl::verify_none);
    }

    shared_state s;
    s.opt = o;
    s.rest = make_rest(o.size, o);
    s.tickets = o.count;
    s.not_ready = o.sessions;
    s.gate.emplace(io, clock_type::time_point::max());
    s.start = clock_type::now();
    s.deadline = s.start + std::chrono::hours(24);
    s.latencies_ms.reserve(1 << 16);

    for (int i = 0; i < o.sessions; ++i) {
        if (o.per_message) asio::co_spawn(io, per_message_worker(s, ctx), asio::detached);
        else asio::co_spawn(io, reuse_session(s, ctx), asio::detached);
    }
    io.run();
    auto end = clock_type::now();
    const double cpu = own_cpu_seconds() - s.cpu_start;
    const double elapsed = std::chrono::duration<double>(end - s.start).count();
    std::sort(s.latencies_ms.begin(), s.latencies_ms.end());
    const double rate = elapsed > 0 ? s.accepted / elapsed : 0;
    const double p50 = percentile(s.latencies_ms, 0.50), p99 = percentile(s.latencies_ms, 0.99);
    const double max = s.latencies_ms.empty() ? 0 : s.latencies_ms.back();
    std::string err;
    for (char c : s.first_error) {
        if (c == '"' || c == '\\') err += '\\';
        if (static_cast<unsigned char>(c) < 0x20) { err += ' '; continue; }
        err += c;
    }
    if (o.json) {
        std::printf("{\"sessions\": %d, \"size\": %zu, \"per_message\": %s, \"accepted\": %ld, "
                    "\"refused\": %ld, \"setup_failures\": %ld, \"broken_sessions\": %ld, "
                    "\"connections\": %ld, \"start_ns\": %lld, \"end_ns\": %lld, \"elapsed_s\": %.3f, "
                    "\"messages_per_s\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, "
                    "\"client_cpu_s\": %.3f, \"pipelined_sessions\": %ld, \"first_error\": \"%s\"}\n",
                    o.sessions, o.size, o.per_message ? "true" : "false", s.accepted, s.refused,
                    s.setup_failures, s.broken, s.connections, static_cast<long long>(ns_of(s.start)),
                    static_cast<long long>(ns_of(end)), elapsed, rate, p50, p99, max, cpu,
                    s.pipelined_sessions, err.c_str());
    } else {
        std::printf("sessions %d, %zu octets, %s: %ld accepted, %ld refused, %ld setup failures, "
                    "%ld broken sessions, %ld connections in %.2f s\n%.1f messages/s, client latency "
                    "p50 %.2f ms, p99 %.2f ms, max %.2f ms; client CPU %.3f s\n",
                    o.sessions, o.size, o.per_message ? "one connection per message" : "reused connections",
                    s.accepted, s.refused, s.setup_failures, s.broken, s.connections, elapsed, rate, p50,
                    p99, max, cpu);
        if (!err.empty()) std::printf("first error: %s\n", err.c_str());
    }
    return (s.accepted > 0 && s.setup_failures == 0) ? 0 : 1;
}
