// bench/tls_sink.cpp: an SMTP sink that stands in for the next hop in relay benchmarks.
//
// Accepts many sessions, offers STARTTLS (certificate and key from PEM files) and requires
// it: MAIL, RCPT and DATA before TLS get 530 5.7.0. Advertises PIPELINING (RFC 2920):
// every complete command in the input buffer is answered before the replies are flushed
// in one write. Accepts every message (250 after the final dot), keeps nothing but counts.
//
// Each message may carry the stamp bench/relay_load writes into its header,
//     X-Relay-Sent: <id> <send-time>
// where send-time is CLOCK_MONOTONIC in nanoseconds (std::chrono::steady_clock on Linux,
// shared by every process on the machine). The sink records the arrival time per message
// id, so the summary holds end-to-end latency (submission at the load generator to arrival
// here) and the first/last arrival times; repeated ids (at-least-once redelivery) are
// counted as duplicates.
//
//   tls_sink --cert server.pem --key server.key [--port 0] [--port-file PATH]
//            [--threads 1] [--expect N] [--summary PATH] [--status PATH]
//            [--arrivals PATH] [--hostname sink.test]
//
// --port-file   the bound port is written there (atomically) once the sink listens
// --expect N    write the summary and exit once N distinct stamped messages have arrived
// --summary     JSON written on exit (SIGTERM, SIGINT or --expect reached)
// --status      "messages distinct last_arrival_ns" rewritten (atomically) every 100 ms
//               while it changes, for a caller that waits for delivery to finish
// --arrivals    one line per message, "id send_ns arrival_ns", written on exit
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <fmt/format.h>

#include "tls/stream.hpp"

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

struct options {
    std::string port = "0";
    std::string port_file, cert, key, summary, status, arrivals;
    std::string hostname = "sink.postern.test";
    int threads = 1;
    long expect = 0;
    std::size_t max_size = 100 * 1024 * 1024;
};

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch())
        .count();
}

struct arrival {
    std::uint64_t id;
    std::int64_t sent_ns, arrived_ns;
};

struct sink_state {
    options opt;
    std::mutex mu;
    std::vector<arrival> arrivals;       // stamped messages, in arrival order
    std::unordered_set<std::uint64_t> seen;
    long messages = 0, unstamped = 0, duplicates = 0;
    long sessions = 0, tls_sessions = 0, refused_plaintext = 0, handshake_failures = 0;
    std::uint64_t bytes = 0;
    std::int64_t first_arrival_ns = 0, last_arrival_ns = 0;
    std::atomic<bool> done{false};
};

void write_file_atomically(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    if (FILE* f = std::fopen(tmp.c_str(), "w")) {
        std::fwrite(text.data(), 1, text.size(), f);
        std::fclose(f);
        std::rename(tmp.c_str(), path.c_str());
    }
}

double percentile(const std::vector<double>& v, double p) {
    if (v.empty()) return 0;
    std::size_t i = static_cast<std::size_t>(p * (v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

void write_summary(sink_state& s) {
    std::lock_guard lock(s.mu);
    std::vector<double> lat;
    lat.reserve(s.arrivals.size());
    std::int64_t first_sent = 0;
    for (const auto& a : s.arrivals) {
        lat.push_back(static_cast<double>(a.arrived_ns - a.sent_ns) / 1e6);
        if (first_sent == 0 || a.sent_ns < first_sent) first_sent = a.sent_ns;
    }
    std::sort(lat.begin(), lat.end());
    double sum = 0;
    for (double x : lat) sum += x;
    const std::string json = fmt::format(
        "{{\"messages\": {}, \"distinct\": {}, \"duplicates\": {}, \"unstamped\": {}, "
        "\"bytes\": {}, \"sessions\": {}, \"tls_sessions\": {}, \"refused_plaintext\": {}, "
        "\"handshake_failures\": {}, \"first_sent_ns\": {}, \"first_arrival_ns\": {}, "
        "\"last_arrival_ns\": {}, \"latency_p50_ms\": {:.3f}, \"latency_p90_ms\": {:.3f}, "
        "\"latency_p99_ms\": {:.3f}, \"latency_max_ms\": {:.3f}, \"latency_mean_ms\": {:.3f}}}\n",
        s.messages, s.seen.size(), s.duplicates, s.unstamped, s.bytes, s.sessions, s.tls_sessions,
        s.refused_plaintext, s.handshake_failures, first_sent, s.first_arrival_ns, s.last_arrival_ns,
        percentile(lat, 0.50), percentile(lat, 0.90), percentile(lat, 0.99),
        lat.empty() ? 0.0 : lat.back(), lat.empty() ? 0.0 : sum / static_cast<double>(lat.size()));
    if (!s.opt.summary.empty()) write_file_atomically(s.opt.summary, json);
    else std::fputs(json.c_str(), stdout);
    if (!s.opt.arrivals.empty()) {
        std::string out;
        out.reserve(s.arrivals.size() * 40);
        for (const auto& a : s.arrivals) out += fmt::format("{} {} {}\n", a.id, a.sent_ns, a.arrived_ns);
        write_file_atomically(s.opt.arrivals, out);
    }
}

// Where "\r\n.\r\n" starts in `in`, at or after `from`; npos when not there yet. The end
// of data always holds a dot, and relayed bodies have few: looking for dots costs far
// less than a memchr for every line's CR, and the sink shares the machine it measures.
std::size_t find_end_of_data(const std::string& in, std::size_t from) {
    const char* const base = in.data();
    const std::size_t n = in.size();
    for (std::size_t pos = from + 2; pos + 2 < n;) {
        const void* hit = std::memchr(base + pos, '.', n - 2 - pos);
        if (!hit) return std::string::npos;
        const std::size_t k = static_cast<std::size_t>(static_cast<const char*>(hit) - base);
        if (base[k - 2] == '\r' && base[k - 1] == '\n' && base[k + 1] == '\r' && base[k + 2] == '\n') return k - 2;
        pos = k + 1;
    }
    return std::string::npos;
}

// Finds "X-Relay-Sent: <id> <ns>" in the header part of a message (data = the message
// as received, dot-stuffed, without the terminating dot line).
bool find_stamp(std::string_view data, std::uint64_t& id, std::int64_t& sent) {
    std::size_t header_end = data.find("\r\n\r\n");
    std::string_view head = data.substr(0, header_end == std::string_view::npos ? data.size() : header_end);
    static constexpr std::string_view key = "X-Relay-Sent: ";
    std::size_t pos = 0;
    for (;;) {
        std::size_t at = head.find(key, pos);
        if (at == std::string_view::npos) return false;
        if (at == 0 || head[at - 1] == '\n') {
            const char* p = head.data() + at + key.size();
            const char* end = head.data() + head.size();
            char* q = nullptr;
            std::string num(p, static_cast<std::size_t>(std::min<std::ptrdiff_t>(end - p, 64)));
            id = std::strtoull(num.c_str(), &q, 10);
            if (q == num.c_str()) return false;
            const char* r = q;
            sent = std::strtoll(r, &q, 10);
            return q != r;
        }
        pos = at + 1;
    }
}

void record_message(sink_state& s, std::string_view data, boost::asio::io_context& io) {
    const std::int64_t t = now_ns();
    std::uint64_t id = 0;
    std::int64_t sent = 0;
    const bool stamped = find_stamp(data, id, sent);
    bool reached = false;
    {
        std::lock_guard lock(s.mu);
        ++s.messages;
        s.bytes += data.size();
        if (s.first_arrival_ns == 0) s.first_arrival_ns = t;
        s.last_arrival_ns = t;
        if (!stamped) {
            ++s.unstamped;
        } else if (!s.seen.insert(id).second) {
            ++s.duplicates;
        } else {
            s.arrivals.push_back({id, sent, t});
            reached = s.opt.expect > 0 && static_cast<long>(s.seen.size()) >= s.opt.expect;
        }
    }
    if (reached && !s.done.exchange(true)) {
        write_summary(s);
        io.stop();
    }
}

// One connection: the plain socket, and after STARTTLS the TLS stream over it.
struct connection {
    tcp::socket sock;
    std::optional<postern::tls::stream> tls;   // OpenSSL on the socket itself, as the servers under test
    explicit connection(tcp::socket s) : sock(std::move(s)) {}

    awaitable<std::size_t> read_some(char* p, std::size_t n) {
        if (tls) {
            auto [ec, got] = co_await tls->read_some(asio::buffer(p, n));
            if (ec) throw boost::system::system_error(ec);
            co_return got;
        }
        co_return co_await sock.async_read_some(asio::buffer(p, n), use_awaitable);
    }
    awaitable<void> write(const std::string& out) {
        if (tls) {
            auto [ec, n] = co_await tls->write(asio::buffer(out));
            if (ec) throw boost::system::system_error(ec);
        } else {
            co_await asio::async_write(sock, asio::buffer(out), use_awaitable);
        }
    }
};

bool starts_with_ci(std::string_view line, std::string_view word) {
    if (line.size() < word.size()) return false;
    for (std::size_t i = 0; i < word.size(); ++i)
        if (std::toupper(static_cast<unsigned char>(line[i])) != word[i]) return false;
    return line.size() == word.size() || line[word.size()] == ' ' || line[word.size()] == ':';
}

awaitable<void> session(tcp::socket sock, sink_state& s, ssl::context& tls_ctx, asio::io_context& io) {
    connection c(std::move(sock));
    {
        std::lock_guard lock(s.mu);
        ++s.sessions;
    }
    std::string in;                  // unread input starts at `pos`
    std::size_t pos = 0;
    std::string out = fmt::format("220 {} ESMTP relay benchmark sink\r\n", s.opt.hostname);
    bool have_mail = false, have_rcpt = false, in_data = false;
    std::size_t data_start = 0, scan = 0;
    std::vector<char> chunk(65536);
    try {
        for (;;) {
            // Answer every complete command (or finish the message) already buffered.
            bool progress = true;
            bool quit = false, starttls = false;
            while (progress && !quit && !starttls) {
                progress = false;
                if (in_data) {
                    // The message ends at CRLF "." CRLF; the DATA line's CRLF counts as the
                    // first CRLF, so an empty message is just ".\r\n".
                    if (in.size() - data_start >= 3 && in.compare(data_start, 3, ".\r\n") == 0) {
                        record_message(s, std::string_view(), io);
                        pos = data_start + 3;
                    } else {
                        std::size_t from = std::max(scan >= 4 ? scan - 4 : 0, data_start);
                        std::size_t end = find_end_of_data(in, from);
                        if (end == std::string::npos) {
                            scan = in.size();
                            break;
                        }
                        record_message(s, std::string_view(in).substr(data_start, end + 2 - data_start), io);
                        pos = end + 5;
                    }
                    out += "250 2.0.0 Ok: queued\r\n";
                    in_data = have_mail = have_rcpt = false;
                    progress = true;
                    continue;
                }
                std::size_t eol = in.find("\r\n", pos);
                if (eol == std::string::npos) break;
                std::string_view line(in.data() + pos, eol - pos);
                pos = eol + 2;
                progress = true;
                if (starts_with_ci(line, "EHLO")) {
                    out += fmt::format("250-{}\r\n250-PIPELINING\r\n250-SIZE {}\r\n250-8BITMIME\r\n"
                                       "250-ENHANCEDSTATUSCODES\r\n{}",
                                       s.opt.hostname, s.opt.max_size,
                                       c.tls ? "250 HELP\r\n" : "250 STARTTLS\r\n");
                    have_mail = have_rcpt = false;
                } else if (starts_with_ci(line, "HELO")) {
                    out += fmt::format("250 {}\r\n", s.opt.hostname);
                } else if (starts_with_ci(line, "STARTTLS")) {
                    if (c.tls) {
                        out += "503 5.5.1 TLS already active\r\n";
                    } else {
                        out += "220 2.0.0 Ready to start TLS\r\n";
                        starttls = true;
                    }
                } else if (starts_with_ci(line, "QUIT")) {
                    out += "221 2.0.0 Bye\r\n";
                    quit = true;
                } else if (starts_with_ci(line, "RSET")) {
                    have_mail = have_rcpt = false;
                    out += "250 2.0.0 Ok\r\n";
                } else if (starts_with_ci(line, "NOOP")) {
                    out += "250 2.0.0 Ok\r\n";
                } else if (starts_with_ci(line, "MAIL") || starts_with_ci(line, "RCPT") ||
                           starts_with_ci(line, "DATA")) {
                    if (!c.tls) {
                        std::lock_guard lock(s.mu);
                        ++s.refused_plaintext;
                        out += "530 5.7.0 Must issue a STARTTLS command first\r\n";
                    } else if (starts_with_ci(line, "MAIL")) {
                        have_mail = true;
                        have_rcpt = false;
                        out += "250 2.1.0 Ok\r\n";
                    } else if (starts_with_ci(line, "RCPT")) {
                        if (have_mail) {
                            have_rcpt = true;
                            out += "250 2.1.5 Ok\r\n";
                        } else {
                            out += "503 5.5.1 Need MAIL first\r\n";
                        }
                    } else if (have_rcpt) {
                        out += "354 End data with <CR><LF>.<CR><LF>\r\n";
                        in_data = true;
                        data_start = scan = pos;
                    } else {
                        out += "554 5.5.1 No valid recipients\r\n";
                    }
                } else {
                    out += "502 5.5.2 Command not recognized\r\n";
                }
            }
            if (!out.empty()) {
                co_await c.write(out);
                out.clear();
            }
            if (quit) break;
            if (starttls) {
                if (pos != in.size()) break;     // bytes pipelined after STARTTLS: refuse them
                in.clear();
                pos = 0;
                c.tls.emplace(c.sock, SSL_new(tls_ctx.native_handle()));
                if (auto [ec] = co_await c.tls->handshake(postern::tls::stream::role::server); ec) {
                    std::lock_guard lock(s.mu);
                    ++s.handshake_failures;
                    throw boost::system::system_error(ec);
                }
                std::lock_guard lock(s.mu);
                ++s.tls_sessions;
                continue;
            }
            // Drop what has been consumed, keeping an unfinished message whole.
            std::size_t keep_from = in_data ? data_start : pos;
            if (keep_from > 0 && keep_from >= in.size() / 2) {
                in.erase(0, keep_from);
                if (in_data) {
                    scan -= keep_from;
                    data_start = 0;
                    pos = 0;
                } else {
                    pos -= keep_from;
                }
            }
            std::size_t n = co_await c.read_some(chunk.data(), chunk.size());
            in.append(chunk.data(), n);
        }
        if (c.tls) {
            co_await c.tls->shutdown();
        }
    } catch (const std::exception&) {
        // the peer went away; nothing to report per session
    }
}

awaitable<void> accept_loop(tcp::acceptor& acceptor, sink_state& s, ssl::context& tls_ctx,
                            asio::io_context& io) {
    for (;;) {
        tcp::socket sock = co_await acceptor.async_accept(use_awaitable);
        boost::system::error_code ec;
        sock.set_option(tcp::no_delay(true), ec);
        asio::co_spawn(io, session(std::move(sock), s, tls_ctx, io), asio::detached);
    }
}

awaitable<void> status_loop(sink_state& s) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    std::string last;
    for (;;) {
        std::string now;
        {
            std::lock_guard lock(s.mu);
            now = fmt::format("{} {} {}\n", s.messages, s.seen.size(), s.last_arrival_ns);
        }
        if (now != last) {
            write_file_atomically(s.opt.status, now);
            last = now;
        }
        timer.expires_after(std::chrono::milliseconds(100));
        co_await timer.async_wait(use_awaitable);
    }
}

int usage(const char* msg) {
    std::fprintf(stderr, "tls_sink: %s\n", msg);
    std::fprintf(stderr,
                 "usage: tls_sink --cert PEM --key PEM [--port 0] [--port-file PATH] [--threads 1] "
                 "[--expect N] [--summary PATH] [--status PATH] [--arrivals PATH] [--hostname NAME]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--help") return usage("help"), 0;
        if (i + 1 >= argc) return usage("missing value");
        const char* v = argv[++i];
        if (a == "--port") o.port = v;
        else if (a == "--port-file") o.port_file = v;
        else if (a == "--cert") o.cert = v;
        else if (a == "--key") o.key = v;
        else if (a == "--threads") o.threads = std::max(1, std::atoi(v));
        else if (a == "--expect") o.expect = std::atol(v);
        else if (a == "--summary") o.summary = v;
        else if (a == "--status") o.status = v;
        else if (a == "--arrivals") o.arrivals = v;
        else if (a == "--hostname") o.hostname = v;
        else return usage("unknown option");
    }
    if (o.cert.empty() || o.key.empty()) return usage("--cert and --key are required");

    asio::io_context io(o.threads);
    ssl::context tls_ctx(ssl::context::tls_server);
    tls_ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    try {
        tls_ctx.use_certificate_chain_file(o.cert);
        tls_ctx.use_private_key_file(o.key, ssl::context::pem);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tls_sink: certificate or key: %s\n", e.what());
        return 1;
    }

    sink_state s;
    s.opt = o;
    s.arrivals.reserve(1 << 16);

    tcp::acceptor acceptor(io);
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(std::atoi(o.port.c_str())));
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(asio::socket_base::max_listen_connections);
    const unsigned port = acceptor.local_endpoint().port();
    if (!o.port_file.empty()) write_file_atomically(o.port_file, fmt::format("{}\n", port));
    else std::printf("%u\n", port), std::fflush(stdout);

    asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](const boost::system::error_code& ec, int) {
        if (ec) return;
        if (!s.done.exchange(true)) write_summary(s);
        io.stop();
    });
    asio::co_spawn(io, accept_loop(acceptor, s, tls_ctx, io), asio::detached);
    if (!o.status.empty()) asio::co_spawn(io, status_loop(s), asio::detached);

    std::vector<std::thread> pool;
    for (int i = 1; i < o.threads; ++i) pool.emplace_back([&] { io.run(); });
    io.run();
    for (auto& t : pool) t.join();
    if (!s.done.exchange(true)) write_summary(s);
    std::_Exit(0);     // sessions may still be open: no orderly teardown needed
}
