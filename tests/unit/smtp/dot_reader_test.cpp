// DATA reader: the end is <CRLF>.<CRLF> only; smuggling forms never end the data.
#include <gtest/gtest.h>
#include <random>
#include <string>

#include <fmt/format.h>

#include "smtp/dot_reader.hpp"

using namespace postern::smtp;

namespace {
struct read_all {
    data_verdict verdict;
    std::string body;
    std::string rest;
    bool done;
};

read_all run(std::string_view input, dot_limits limits = {}, std::size_t chunk = 0) {
    dot_reader r(limits);
    std::size_t pos = 0;
    if (chunk == 0) chunk = input.size() ? input.size() : 1;
    while (pos < input.size() && !r.done()) {
        auto piece = input.substr(pos, std::min(chunk, input.size() - pos));
        pos += r.feed(piece);
    }
    return {r.verdict(), r.take_body(), std::string(input.substr(pos)), r.done()};
}
}  // namespace

TEST(dot_reader, simple_message) {
    auto r = run("Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    EXPECT_TRUE(r.done);
    EXPECT_EQ(r.verdict, data_verdict::ok);
    EXPECT_EQ(r.body, "Subject: hi\r\n\r\nbody\r\n");
    EXPECT_EQ(r.rest, "QUIT\r\n");
}

TEST(dot_reader, empty_message) {
    auto r = run(".\r\n");
    EXPECT_TRUE(r.done);
    EXPECT_EQ(r.body, "");
}

TEST(dot_reader, dot_unstuffing) {
    auto r = run("..leading\r\n...\r\n.x\r\nmid.dle\r\n.\r\n");
    EXPECT_EQ(r.verdict, data_verdict::ok);
    EXPECT_EQ(r.body, ".leading\r\n..\r\nx\r\nmid.dle\r\n");
}

TEST(dot_reader, same_result_for_every_chunk_size) {
    const std::string input = "A: b\r\nReceived: x\r\n\r\n..dots\r\nline\r\n.\r\nNEXT";
    for (std::size_t chunk = 1; chunk <= input.size(); ++chunk) {
        SCOPED_TRACE(chunk);
        auto r = run(input, {}, chunk);
        EXPECT_TRUE(r.done);
        EXPECT_EQ(r.body, "A: b\r\nReceived: x\r\n\r\n.dots\r\nline\r\n");
        EXPECT_EQ(r.rest, "NEXT");
    }
}

// Each smuggling form, followed by a second envelope, and only then the real end.
class smuggling : public ::testing::TestWithParam<const char*> {};

TEST_P(smuggling, fake_end_does_not_end_data_and_nothing_is_stored) {
    const std::string fake = GetParam();
    const std::string input = "Subject: one\r\n\r\nbody" + fake +
                              "MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\nDATA\r\n"
                              "Subject: smuggled\r\n\r\nx\r\n.\r\nQUIT\r\n";
    for (std::size_t chunk : {std::size_t(0), std::size_t(1), std::size_t(3)}) {
        auto r = run(input, {}, chunk);
        EXPECT_TRUE(r.done);
        EXPECT_EQ(r.verdict, data_verdict::bare_line_ending);
        EXPECT_EQ(r.body, "");
        EXPECT_EQ(r.rest, "QUIT\r\n");             // the smuggled MAIL was read as data
    }
}

INSTANTIATE_TEST_SUITE_P(forms, smuggling,
                         ::testing::Values("\n.\n", "\n.\r\n", "\r.\r", "\r\n.\n", "\r\n.\r", "\r.\r\n",
                                           "\n.\r", "\r\n.\r\r\n"));

TEST(dot_reader, nul_is_rejected) {
    auto r = run(std::string("a\0b\r\n.\r\n", 8));
    EXPECT_TRUE(r.done);
    EXPECT_EQ(r.verdict, data_verdict::nul);
    EXPECT_EQ(r.body, "");
}

TEST(dot_reader, line_of_1000_octets_is_fine_1001_is_not) {
    auto ok = run(std::string(998, 'x') + "\r\n.\r\n");
    EXPECT_EQ(ok.verdict, data_verdict::ok);
    auto bad = run(std::string(999, 'x') + "\r\n.\r\n");
    EXPECT_EQ(bad.verdict, data_verdict::line_too_long);
    EXPECT_TRUE(bad.done);
    auto stuffed = run(fmt::format(".{}\r\n.\r\n", std::string(998, 'x')));   // transmitted 1001 octets
    EXPECT_EQ(stuffed.verdict, data_verdict::line_too_long);
}

TEST(dot_reader, size_limit_counts_but_keeps_reading) {
    auto r = run(std::string(50, 'x') + "\r\n" + std::string(50, 'y') + "\r\n.\r\nQUIT\r\n", {.max_size = 60});
    EXPECT_TRUE(r.done);
    EXPECT_EQ(r.verdict, data_verdict::too_big);
    EXPECT_EQ(r.rest, "QUIT\r\n");
}

TEST(dot_reader, syntax_problem_wins_over_size) {
    auto r = run(std::string(100, 'x') + "\n\r\n.\r\n", {.max_size = 10});
    EXPECT_EQ(r.verdict, data_verdict::bare_line_ending);
}

TEST(dot_reader, tls_required_no_is_seen_in_the_header_section_only) {
    auto seen = [](const std::string& msg) {
        dot_reader r({});
        r.feed(msg);
        EXPECT_TRUE(r.done());
        return r.tls_required_no();
    };
    EXPECT_TRUE(seen("Subject: x\r\nTLS-Required:  no \r\n\r\nbody\r\n.\r\n"));
    EXPECT_TRUE(seen("tls-required:No\r\n\r\n.\r\n"));
    EXPECT_FALSE(seen("TLS-Required: Yes\r\n\r\n.\r\n"));
    EXPECT_FALSE(seen("TLS-Required: Nope\r\n\r\n.\r\n"));
    EXPECT_FALSE(seen("X-TLS-Required: No\r\n\r\n.\r\n"));
    EXPECT_FALSE(seen("Subject: x\r\n\r\nTLS-Required: No\r\n.\r\n"));   // in the body
}

TEST(dot_reader, received_headers_are_counted_in_the_header_section_only) {
    std::string msg;
    for (int i = 0; i < 3; ++i) msg += "Received: from hop" + std::to_string(i) + "\r\n";
    msg += "received:lower\r\nX-Received: no\r\n\r\nReceived: in body\r\n.\r\n";
    dot_reader r({.max_hop_count = 10});
    r.feed(msg);
    EXPECT_TRUE(r.done());
    EXPECT_EQ(r.received_headers(), 4u);
    EXPECT_EQ(r.verdict(), data_verdict::ok);
    auto over = run(msg, {.max_hop_count = 3});
    EXPECT_EQ(over.verdict, data_verdict::too_many_hops);
}

TEST(dot_reader, header_size_limit) {
    auto r = run("X-Long: " + std::string(500, 'a') + "\r\n\r\nbody\r\n.\r\n", {.max_header_size = 100});
    EXPECT_EQ(r.verdict, data_verdict::header_too_big);
    auto fine = run("X: y\r\n\r\n" + std::string(500, 'a') + "\r\n.\r\n", {.max_header_size = 100});
    EXPECT_EQ(fine.verdict, data_verdict::ok);
}

// --- the fast path against the rules, on random input -------------------------------------
// A model of RFC 5321 §4.1.1.4/§4.5.2 as the reader applies it, written for clarity: the
// end is the first <CRLF>.<CRLF> (the DATA line's CRLF counting as the first CRLF); a line
// start dot is removed; a CR or LF that is not part of a CRLF, a NUL, or more than 998
// octets before a CRLF make the message unacceptable, the first such problem naming it.
namespace {

struct model_result {
    bool done = false;
    std::size_t consumed = 0;
    data_verdict verdict = data_verdict::ok;
    std::string body;
};

model_result model(std::string_view input, const dot_limits& limits) {
    model_result r;
    const std::string framed = "\r\n" + std::string(input);
    const auto end = framed.find("\r\n.\r\n");
    if (end == std::string::npos) {
        r.consumed = input.size();
        return r;
    }
    r.done = true;
    r.consumed = end + 3;
    const std::string_view data = input.substr(0, end);
    data_verdict syntax = data_verdict::ok;
    auto problem = [&](data_verdict v) {
        if (syntax == data_verdict::ok) syntax = v;
    };
    std::size_t line_length = 0;
    bool line_start = true;
    for (std::size_t k = 0; k < data.size();) {
        const char c = data[k];
        if (line_start && c == '.') {          // transmitted, not kept
            ++line_length;
            line_start = false;
            ++k;
            continue;
        }
        line_start = false;
        if (c == '\r' && k + 1 < data.size() && data[k + 1] == '\n') {
            r.body += "\r\n";
            line_length = 0;
            line_start = true;
            k += 2;
            continue;
        }
        if (c == '\r' || c == '\n') problem(data_verdict::bare_line_ending);
        if (c == '\0') problem(data_verdict::nul);
        if (++line_length == dot_reader::max_line - 1) problem(data_verdict::line_too_long);
        r.body += c;
        ++k;
    }
    r.verdict = syntax != data_verdict::ok ? syntax
                : r.body.size() > limits.max_size ? data_verdict::too_big
                                                  : data_verdict::ok;
    if (r.verdict != data_verdict::ok) r.body.clear();
    return r;
}

/// Mostly plain text, with dots, CRs, LFs and NULs where they make trouble, some long
/// lines, an optional header section and an optional end of data followed by more input.
std::string random_input(std::mt19937& rng) {
    std::string s;
    std::uniform_int_distribution<int> pick(0, 999);
    if (pick(rng) < 500) s += "Subject: random\r\n\r\n";
    const int lines = std::uniform_int_distribution<int>(0, 40)(rng);
    for (int l = 0; l < lines; ++l) {
        const int p = pick(rng);
        if (p < 8) s.append(std::uniform_int_distribution<std::size_t>(990, 1005)(rng), 'x');
        else if (p < 200) s += '.';
        const int length = std::uniform_int_distribution<int>(0, 120)(rng);
        for (int i = 0; i < length; ++i) {
            const int q = pick(rng);
            s += q < 60 ? '.' : q < 150 ? ' ' : char('a' + q % 26);
        }
        if (const int t = pick(rng); t < 30) {
            // one troublesome octet somewhere in the line
            const char trouble[] = {'\r', '\n', '\0', '\r'};
            s.insert(s.size() - std::uniform_int_distribution<std::size_t>(0, length)(rng), 1, trouble[t % 4]);
        }
        s += "\r\n";
    }
    if (pick(rng) < 800) s += ".\r\nQUIT\r\n";
    return s;
}

}  // namespace

TEST(dot_reader, agrees_with_the_rules_for_random_input_in_any_chunking) {
    std::mt19937 rng(20261129);
    dot_limits limits;
    limits.max_size = 1500;
    for (int round = 0; round < 3000; ++round) {
        const std::string input = random_input(rng);
        const auto expected = model(input, limits);
        for (std::size_t chunk : {std::size_t(0), std::size_t(1), std::size_t(2), std::size_t(15), std::size_t(16),
                                  std::size_t(17), std::size_t(100)}) {
            SCOPED_TRACE(testing::Message() << "round " << round << " chunk " << chunk);
            auto r = run(input, limits, chunk);
            ASSERT_EQ(r.done, expected.done);
            ASSERT_EQ(input.size() - r.rest.size(), expected.consumed);
            if (!r.done) continue;            // no verdict before the end
            ASSERT_EQ(r.verdict, expected.verdict) << to_string(r.verdict) << " vs " << to_string(expected.verdict);
            ASSERT_EQ(r.body, expected.body);
        }
    }
}
