// bench/smtp_load.cpp: an SMTP load generator for measuring acceptance (not delivery).
//
// Opens N concurrent sessions; each does EHLO, STARTTLS, EHLO, then loops MAIL/RCPT/DATA
// on the same connection with a message of S octets, until the duration has passed or
// the total count is reached. Reports messages/s and the latency of a whole transaction
// (MAIL sent -> 250 after the final dot): p50, p99, max, and its own CPU time per
// message (user+system of this process over the measured window, getrusage).
//
// The client is meant to cost little, since it shares the machine with the server:
// when the server advertises PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in one
// write and their three replies are read together; the message and the final dot go
// out in one write. Without PIPELINING every command waits for its reply. --no-pipelining
// forces the latter.
//
//   smtp_load --port 2525 [--host 127.0.0.1] [--sessions 16] [--size 1024]
//             [--duration 10 | --count 1000] [--ca ca.pem --sni mx.example.test]
//             [--no-tls] [--no-pipelining] [--to bob@example.test]
//             [--from alice@client.test] [--json]
//             [--rcpt-file FILE [--rcpts-per-mail 100]]
//
// --rcpt-file measures recipient checks instead: after one MAIL, RCPTs for the file's
// addresses (one per line, taken in turn by all sessions together, round and round)
// go out --rcpts-per-mail at a time (in one write when PIPELINING is advertised), then
// RSET and MAIL again; no DATA. "accepted" then counts 250 replies to RCPT, "refused"
// every other reply, and the rate is recipients per second (latency: one whole batch).
//
// One thread runs every session (the server gets the other cores); Boost.Asio 1.81 C++20
// coroutines, OpenSSL through asio::ssl. Exit status 0 when at least one message was
// accepted and no session failed to set up, 1 otherwise, 2 on bad usage.
#include <algorithm>
#include <atomic>
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
    long count = 0;                       // > 0: stop after this many messages in total
    std::string ca;                       // verify the server against this CA file
    std::string sni;                      // and this name (default: none, no name check)
    bool tls = true;
    bool pipelining = true;               // use it when the server advertises it
    std::string from = "alice@client.test";
    std::string to = "bob@example.test";
    std::string helo = "load.client.test";
    bool json = false;
    std::string rcpt_file;                // RCPT-only mode
    int rcpts_per_mail = 100;
};

struct shared_state {
    options opt;
    std::string body;                     // the message, CRLF lines, no terminator
    clock_type::time_point start, deadline;
    double cpu_start = 0;                 // own user+system seconds when the gate opened
    long tickets = 0;                     // count mode: messages left to send
    int not_ready = 0;                    // sessions still setting up
    std::optional<asio::steady_timer> gate;   // opened when every session is ready
    std::vector<double> latencies_ms;
    long accepted = 0, refused = 0, setup_failures = 0, broken = 0;
    long pipelined_sessions = 0;          // sessions that used PIPELINING
    std::string first_error;
    std::vector<std::string> rcpts;       // RCPT-only mode: the addresses, in turn
    std::size_t next_rcpt = 0;
};

void note_error(shared_state& s, const std::string& what) {
    if (s.first_error.empty()) s.first_error = what;
}

std::string make_body(std::size_t size, const options& o) {
    std::string m = fmt::format(
        "From: <{}>\r\nTo: <{}>\r\nSubject: load test\r\nMessage-ID: <load@client.test>\r\n"
        "\r\n", o.from, o.to);
    const std::string line(76, 'x');
    while (m.size() + 78 <= size) m += line + "\r\n";
    if (m.size() < size) m += std::string(size - m.size() > 2 ? size - m.size() - 2 : 0, 'y') + "\r\n";
    return m;
}

void record(shared_state& s, clock_type::time_point t0) {
    s.latencies_ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
    ++s.accepted;
}

// The measured loop: MAIL, RCPT, DATA, body, one latency sample per transaction.
// Pipelined: [MAIL RCPT DATA] in one write, three replies, then [body "."] in one write.
template <class Stream>
awaitable<void> transactions(Stream& stream, std::string& buf, shared_state& s, bool pipelined) {
    const std::string mail = fmt::format("MAIL FROM:<{}> SIZE={}", s.opt.from, s.body.size());
    const std::string rcpt = fmt::format("RCPT TO:<{}>", s.opt.to);
    const std::string group = mail + "\r\n" + rcpt + "\r\nDATA\r\n";
    const std::string payload = s.body + ".\r\n";
    if (pipelined) ++s.pipelined_sessions;
    for (;;) {
        if (s.opt.count > 0) {
            if (s.tickets <= 0) break;
            --s.tickets;
        } else if (clock_type::now() >= s.deadline) {
            break;
        }
        auto t0 = clock_type::now();
        reply r;
        if (pipelined) {
            co_await write_all(stream, asio::buffer(group));
            reply rm = co_await read_reply(stream, buf);
            reply rr = co_await read_reply(stream, buf);
            r = co_await read_reply(stream, buf);
            if (r.code == 354) {
                // RFC 2920 §3.1: DATA was accepted, so the message must follow, even if
                // MAIL or RCPT failed (then the server rejects it after the dot).
                co_await write_all(stream, asio::buffer(payload));
                r = co_await read_reply(stream, buf);
                if (r.code == 250 && rm.code == 250 && rr.code == 250) {
                    record(s, t0);
                    continue;
                }
            }
            if (rm.code != 250) r = rm;
            else if (rr.code != 250) r = rr;
        } else {
            r = co_await command(stream, buf, mail);
            if (r.code == 250) {
                r = co_await command(stream, buf, rcpt);
                if (r.code == 250) {
                    r = co_await command(stream, buf, "DATA");
                    if (r.code == 354) {
                        co_await write_all(stream, asio::buffer(payload));
                        r = co_await read_reply(stream, buf);
                        if (r.code == 250) {
                            record(s, t0);
                            continue;
                        }
                    }
                }
            }
        }
        ++s.refused;
        note_error(s, r.text);
        if (r.code == 421) co_return;
        if (r.code >= 400) {
            reply rr = co_await command(stream, buf, "RSET");
            if (rr.code != 250) co_return;
        }
    }
    co_await command(stream, buf, "QUIT");
}

// The RCPT-only loop: MAIL, batches of RCPT, RSET; one latency sample per batch.
template <class Stream>
awaitable<void> recipients(Stream& stream, std::string& buf, shared_state& s, bool pipelined) {
    const std::string mail = fmt::format("MAIL FROM:<{}>", s.opt.from);
    if (pipelined) ++s.pipelined_sessions;
    for (;;) {
        if (s.opt.count > 0 ? s.tickets <= 0 : clock_type::now() >= s.deadline) break;
        if (reply r = co_await command(stream, buf, mail); r.code != 250) {
            note_error(s, r.text);
            co_return;
        }
        const int batch = s.opt.count > 0 ? static_cast<int>(std::min<long>(s.tickets, s.opt.rcpts_per_mail))
                                          : s.opt.rcpts_per_mail;
        if (s.opt.count > 0) s.tickets -= batch;
        std::string group;
        for (int i = 0; i < batch; ++i)
            group += "RCPT TO:<" + s.rcpts[s.next_rcpt++ % s.rcpts.size()] + ">\r\n";
        const auto t0 = clock_type::now();
        std::vector<reply> replies;
        if (pipelined) {
            co_await write_all(stream, asio::buffer(group));
            for (int i = 0; i < batch; ++i) replies.push_back(co_await read_reply(stream, buf));
        } else {
            for (std::size_t at = 0, end; (end = group.find("\r\n", at)) != std::string::npos; at = end + 2)
                replies.push_back(co_await command(stream, buf, group.substr(at, end - at)));
        }
        s.latencies_ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
        for (const auto& r : replies) {
            if (r.code == 250) {
                ++s.accepted;
                continue;
            }
            ++s.refused;
            note_error(s, r.text);
            if (r.code == 421) co_return;
        }
        if (reply r = co_await command(stream, buf, "RSET"); r.code != 250) co_return;
    }
    co_await command(stream, buf, "QUIT");
}

template <class Stream>
awaitable<void> measured_loop(Stream& stream, std::string& buf, shared_state& s, bool pipelined) {
    if (!s.rcpts.empty()) co_await recipients(stream, buf, s, pipelined);
    else co_await transactions(stream, buf, s, pipelined);
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

awaitable<void> session(shared_state& s, ssl::context& tls) {
    auto ex = co_await asio::this_coro::executor;
    bool ready = false;
    try {
        tcp::resolver resolver(ex);
        auto endpoints = co_await resolver.async_resolve(s.opt.host, s.opt.port, use_awaitable);
        tcp::socket sock(ex);
        co_await asio::async_connect(sock, endpoints, use_awaitable);
        sock.set_option(tcp::no_delay(true));
        std::string buf;
        expect(co_await read_reply(sock, buf), 220, "banner");
        reply ehlo = co_await command(sock, buf, "EHLO " + s.opt.helo);
        expect(ehlo, 250, "EHLO");
        if (!s.opt.tls) {
            ready = true;
            co_await wait_gate(s);
            co_await measured_loop(sock, buf, s, s.opt.pipelining && advertises(ehlo.text, "PIPELINING"));
            co_return;
        }
        expect(co_await command(sock, buf, "STARTTLS"), 220, "STARTTLS");
        if (!buf.empty()) throw setup_error("bytes after 220 to STARTTLS");
        postern::tls::stream stream(sock, SSL_new(tls.native_handle()));
        if (!s.opt.sni.empty()) {
            SSL_set_tlsext_host_name(stream.native_handle(), s.opt.sni.c_str());
            if (!s.opt.ca.empty()) SSL_set1_host(stream.native_handle(), s.opt.sni.c_str());
        }
        if (auto [ec] = co_await stream.handshake(postern::tls::stream::role::client); ec)
            throw setup_error("TLS handshake: " + ec.message());
        ehlo = co_await command(stream, buf, "EHLO " + s.opt.helo);
        expect(ehlo, 250, "EHLO after STARTTLS");
        ready = true;
        co_await wait_gate(s);
        co_await measured_loop(stream, buf, s, s.opt.pipelining && advertises(ehlo.text, "PIPELINING"));
        co_await stream.shutdown();
    } catch (const setup_error& e) {
        ++s.setup_failures;
        note_error(s, e.what());
    } catch (const std::exception& e) {
        if (ready) ++s.broken; else ++s.setup_failures;
        note_error(s, e.what());
    }
    if (!ready) co_await wait_gate(s);
}

int usage(const char* msg) {
    std::fprintf(stderr, "smtp_load: %s\n", msg);
    std::fprintf(stderr,
                 "usage: smtp_load --port P [--host H] [--sessions N] [--size BYTES] "
                 "[--duration SECONDS | --count M] [--ca FILE] [--sni NAME] [--no-tls] [--no-pipelining] "
                 "[--from A] [--to A] [--json] [--rcpt-file FILE [--rcpts-per-mail N]]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) return nullptr;
            return argv[++i];
        };
        const char* v = nullptr;
        if (a == "--no-tls") { o.tls = false; continue; }
        if (a == "--json") { o.json = true; continue; }
        if (a == "--no-pipelining") { o.pipelining = false; continue; }
        if (a == "--help") return usage("help"), 0;
        if (!(v = value())) return usage("missing value");
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
        else if (a == "--rcpt-file") o.rcpt_file = v;
        else if (a == "--rcpts-per-mail") o.rcpts_per_mail = std::atoi(v);
        else return usage("unknown option");
    }
    if (o.port.empty() || o.sessions < 1) return usage("--port and --sessions >= 1 are required");
    if (o.rcpts_per_mail < 1) return usage("--rcpts-per-mail must be at least 1");

    asio::io_context io(1);
    ssl::context tls(ssl::context::tls_client);
    tls.set_options(ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    if (!o.ca.empty()) {
        tls.load_verify_file(o.ca);
        tls.set_verify_mode(ssl::verify_peer);
    } else {
        tls.set_verify_mode(ssl::verify_none);
    }

    shared_state s;
    s.opt = o;
    s.body = make_body(o.size, o);
    s.tickets = o.count;
    if (!o.rcpt_file.empty()) {
        std::FILE* f = std::fopen(o.rcpt_file.c_str(), "r");
        if (!f) return usage("cannot read --rcpt-file");
        char line[1024];
        while (std::fgets(line, sizeof line, f)) {
            std::string a(line);
            while (!a.empty() && (a.back() == '\n' || a.back() == '\r')) a.pop_back();
            if (!a.empty() && a[0] != '#') s.rcpts.push_back(std::move(a));
        }
        std::fclose(f);
        if (s.rcpts.empty()) return usage("--rcpt-file lists no address");
    }
    s.not_ready = o.sessions;
    s.gate.emplace(io, clock_type::time_point::max());
    s.start = clock_type::now();
    s.deadline = s.start + std::chrono::hours(24);

    for (int i = 0; i < o.sessions; ++i)
        asio::co_spawn(io, session(s, tls), asio::detached);
    io.run();
    auto end = clock_type::now();
    const double cpu = own_cpu_seconds() - s.cpu_start;
    const double cpu_per_message_ms = s.accepted > 0 ? 1000 * cpu / s.accepted : 0;

    double elapsed = std::chrono::duration<double>(end - s.start).count();
    std::sort(s.latencies_ms.begin(), s.latencies_ms.end());
    double rate = elapsed > 0 ? s.accepted / elapsed : 0;
    double p50 = percentile(s.latencies_ms, 0.50), p99 = percentile(s.latencies_ms, 0.99);
    double max = s.latencies_ms.empty() ? 0 : s.latencies_ms.back();
    if (o.json) {
        std::string err;
        for (char c : s.first_error) {
            if (c == '"' || c == '\\') err += '\\';
            if (static_cast<unsigned char>(c) < 0x20) { err += ' '; continue; }
            err += c;
        }
        std::printf("{\"sessions\": %d, \"size\": %zu, \"accepted\": %ld, \"refused\": %ld, "
                    "\"setup_failures\": %ld, \"broken_sessions\": %ld, \"elapsed_s\": %.3f, "
                    "\"messages_per_s\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, "
                    "\"client_cpu_s\": %.3f, \"client_cpu_ms_per_message\": %.4f, \"pipelined_sessions\": %ld, "
                    "\"replies_per_s\": %.1f, \"first_error\": \"%s\"}\n",
                    o.sessions, s.body.size(), s.accepted, s.refused, s.setup_failures, s.broken,
                    elapsed, rate, p50, p99, max, cpu, cpu_per_message_ms, s.pipelined_sessions,
                    elapsed > 0 ? (s.accepted + s.refused) / elapsed : 0, err.c_str());
    } else {
        std::printf("sessions %d, message %zu octets: %ld accepted, %ld refused, %ld setup failures, "
                    "%ld broken sessions in %.2f s\n%.1f messages/s, latency p50 %.2f ms, p99 %.2f ms, "
                    "max %.2f ms\nclient CPU %.3f s, %.4f ms/message\n",
                    o.sessions, s.body.size(), s.accepted, s.refused, s.setup_failures, s.broken,
                    elapsed, rate, p50, p99, max, cpu, cpu_per_message_ms);
        if (!s.first_error.empty()) std::printf("first error: %s\n", s.first_error.c_str());
    }
    return (s.accepted > 0 && s.setup_failures == 0) ? 0 : 1;
}
