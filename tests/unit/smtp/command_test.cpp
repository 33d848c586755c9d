// Command lines from arbitrary chunks; verbs; AUTH redaction.
#include <gtest/gtest.h>

#include "smtp/command.hpp"

using namespace postern::smtp;

namespace {
std::vector<line> all_lines(line_reader& r) {
    std::vector<line> out;
    while (auto l = r.next()) out.push_back(*l);
    return out;
}
}  // namespace

TEST(line_reader, assembles_lines_across_chunks) {
    line_reader r;
    r.feed("EH");
    EXPECT_FALSE(r.next());
    r.feed("LO a.test\r");
    EXPECT_FALSE(r.next());
    r.feed("\nNOOP\r\nQU");
    auto lines = all_lines(r);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0].text, "EHLO a.test");
    EXPECT_EQ(lines[1].text, "NOOP");
    r.feed("IT\r\n");
    auto last = r.next();
    ASSERT_TRUE(last);
    EXPECT_EQ(last->text, "QUIT");
}

TEST(line_reader, byte_by_byte_gives_the_same_lines) {
    const std::string input = "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n";
    line_reader r;
    std::vector<std::string> got;
    for (char c : input) {
        r.feed(std::string_view(&c, 1));
        while (auto l = r.next()) got.push_back(l->text);
    }
    EXPECT_EQ(got, (std::vector<std::string>{"MAIL FROM:<a@b.test>", "RCPT TO:<c@d.test>", "DATA"}));
}

TEST(line_reader, bare_lf_ends_a_command_line) {
    line_reader r;
    r.feed("NOOP\nQUIT\r\n");
    auto lines = all_lines(r);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0].text, "NOOP");
}

TEST(line_reader, line_of_exactly_2048_octets_with_crlf_is_accepted) {
    line_reader r;
    r.feed("NOOP " + std::string(2048 - 7, 'x') + "\r\n");
    auto l = r.next();
    ASSERT_TRUE(l);
    EXPECT_EQ(l->state, line::status::ok);
}

TEST(line_reader, overlong_line_is_reported_once_and_its_tail_is_not_a_command) {
    line_reader r;
    r.feed(std::string(3000, 'a'));
    EXPECT_FALSE(r.next());
    r.feed(std::string(3000, 'b') + " QUIT\r\nNOOP\r\n");
    auto lines = all_lines(r);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0].state, line::status::too_long);
    EXPECT_EQ(lines[1].text, "NOOP");
    EXPECT_LE(r.buffered(), 0u);
}

TEST(line_reader, overlong_line_arriving_whole_is_too_long) {
    line_reader r;
    r.feed(std::string(2100, 'a') + "\r\nNOOP\r\n");
    auto lines = all_lines(r);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0].state, line::status::too_long);
    EXPECT_EQ(lines[1].text, "NOOP");
}

TEST(line_reader, nul_rejects_the_line) {
    line_reader r;
    r.feed(std::string("MAIL FROM:<a\0b@c>\r\n", 20));
    auto l = r.next();
    ASSERT_TRUE(l);
    EXPECT_EQ(l->state, line::status::nul);
}

TEST(line_reader, take_rest_returns_what_follows) {
    line_reader r;
    r.feed("STARTTLS\r\nMAIL FROM:<evil@x>\r\n");
    ASSERT_EQ(r.next()->text, "STARTTLS");
    EXPECT_EQ(r.take_rest(), "MAIL FROM:<evil@x>\r\n");
    EXPECT_FALSE(r.next());
}

TEST(parse_command, verbs_are_case_insensitive) {
    auto c = parse_command("mAiL FROM:<a@b>");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->verb, "MAIL");
    EXPECT_EQ(c->argument, "FROM:<a@b>");
}

TEST(parse_command, rejects_non_verbs) {
    EXPECT_FALSE(parse_command(""));
    EXPECT_FALSE(parse_command(" NOOP"));
    EXPECT_FALSE(parse_command("NO0P"));
    EXPECT_FALSE(parse_command(std::string(30, 'A')));
    EXPECT_TRUE(parse_command("QUIT"));
    EXPECT_EQ(parse_command("NOOP   ")->argument, "");
}

TEST(redact_for_log, auth_initial_response_is_secret) {
    EXPECT_EQ(redact_for_log("AUTH PLAIN AGFsaWNlAHNlY3JldA=="), "AUTH PLAIN <secret>");
    EXPECT_EQ(redact_for_log("auth login"), "auth login");
    EXPECT_EQ(redact_for_log("MAIL FROM:<a@b>"), "MAIL FROM:<a@b>");
    EXPECT_EQ(redact_for_log("AUTHX PLAIN x"), "AUTHX PLAIN x");
}
