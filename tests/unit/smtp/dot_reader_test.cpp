// DATA reader: the end is <CRLF>.<CRLF> only; smuggling forms never end the data.
#include <gtest/gtest.h>

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
    auto stuffed = run("." + std::string(998, 'x') + "\r\n.\r\n");   // transmitted 1001 octets
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
