// bench/smtp_client_common.hpp: what the load generators share: reading SMTP replies
// (multi-line aware), EHLO keyword checks, one-command exchanges, percentiles and the
// process's own CPU time. Header-only: every bench/*.cpp is its own program.
#pragma once

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <sys/resource.h>

#include <boost/asio.hpp>
#include <fmt/format.h>

#include "tls/stream.hpp"

namespace bench {

using boost::asio::awaitable;
using boost::asio::use_awaitable;
namespace asio = boost::asio;

struct reply {
    int code = 0;
    std::string text;                     // every line, joined with '\n'
};

inline double own_cpu_seconds() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// True when a multi-line EHLO reply lists the keyword (case-insensitive, RFC 5321 §4.1.1.1).
inline bool advertises(const std::string& ehlo_text, std::string_view keyword) {
    std::size_t pos = 0;
    while (pos < ehlo_text.size()) {
        std::size_t end = ehlo_text.find('\n', pos);
        if (end == std::string::npos) end = ehlo_text.size();
        std::string_view line(ehlo_text.data() + pos, end - pos);
        if (line.size() >= 4) {
            line.remove_prefix(4);                            // "250-" / "250 "
            std::string_view word = line.substr(0, line.find(' '));
            if (word.size() == keyword.size() &&
                std::equal(word.begin(), word.end(), keyword.begin(), [](char a, char b) {
                    return std::toupper(static_cast<unsigned char>(a)) == b;
                }))
                return true;
        }
        pos = end + 1;
    }
    return false;
}

// I/O over the plain socket or, after STARTTLS, Postern's TLS stream (OpenSSL on the
// socket itself, as the servers under test use it); errors throw, as with use_awaitable.
inline awaitable<std::size_t> read_some(asio::ip::tcp::socket& s, asio::mutable_buffer into) {
    co_return co_await s.async_read_some(into, use_awaitable);
}
inline awaitable<std::size_t> read_some(postern::tls::stream& s, asio::mutable_buffer into) {
    auto [ec, n] = co_await s.read_some(into);
    if (ec) throw boost::system::system_error(ec);
    co_return n;
}
inline awaitable<void> write_all(asio::ip::tcp::socket& s, asio::const_buffer from) {
    co_await asio::async_write(s, from, use_awaitable);
}
inline awaitable<void> write_all(postern::tls::stream& s, asio::const_buffer from) {
    auto [ec, n] = co_await s.write(from);
    if (ec) throw boost::system::system_error(ec);
}

// Reads one whole SMTP reply (multi-line aware) from a stream, keeping extra bytes in buf.
template <class Stream>
awaitable<reply> read_reply(Stream& stream, std::string& buf) {
    reply r;
    std::size_t pos = 0;                  // start of the current line in buf
    for (;;) {
        std::size_t eol;
        while ((eol = buf.find("\r\n", pos)) == std::string::npos) {
            char chunk[16384];
            std::size_t n = co_await read_some(stream, asio::buffer(chunk));
            buf.append(chunk, n);
        }
        std::string_view line(buf.data() + pos, eol - pos);
        if (!r.text.empty()) r.text += '\n';
        r.text += line;
        pos = eol + 2;
        if (line.size() < 4 || line[3] != '-') {
            r.code = line.size() >= 3 ? (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0') : 0;
            if (line.size() < 3 || !std::isdigit(static_cast<unsigned char>(line[0])) ||
                !std::isdigit(static_cast<unsigned char>(line[1])) ||
                !std::isdigit(static_cast<unsigned char>(line[2])))
                r.code = 0;
            buf.erase(0, pos);
            co_return r;
        }
    }
}

template <class Stream>
awaitable<reply> command(Stream& stream, std::string& buf, std::string_view line) {
    std::string out(line);
    out += "\r\n";
    co_await write_all(stream, asio::buffer(out));
    co_return co_await read_reply(stream, buf);
}

struct setup_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline void expect(const reply& r, int code, std::string_view step) {
    if (r.code != code) throw setup_error(fmt::format("{}: expected {}, got: {}", step, code, r.text));
}

inline double percentile(std::vector<double>& v, double p) {
    if (v.empty()) return 0;
    std::size_t i = static_cast<std::size_t>(p * (v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

}  // namespace bench
