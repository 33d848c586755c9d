// `config set`: in-place edits that keep every other byte, validation first, atomic write.
#include <fstream>
#include <sstream>

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "config/edit.hpp"

namespace postern::config {
namespace {

constexpr std::string_view original = R"(# Postern on mx1 — keep this comment
[server]
hostname = "mx1.example.test"   # the banner name
user = "postern"

# inbound from the partner
[[receive_connector]]
name = "from-partner"
bind = ["127.0.0.1:2525"]   # loopback only
remote_ip_ranges = [
    "192.0.2.0/24",   # partner A
]
require_tls = false

[[receive_connector]]
name = "internal"
bind = ["127.0.0.1:2526"]

# trailing comment
)";

edit_result set(std::string_view section, std::string_view name, std::vector<assignment> a,
                std::string_view text = original) {
    return set_values(text, "postern.toml", section, name, a);
}

std::string errors_of(const edit_result& r) {
    std::string out;
    for (const auto& e : r.errors) out += e.to_string() + "\n";
    return out;
}

TEST(config_set, replaces_a_value_in_place) {
    auto r = set("receive_connector", "from-partner", {{"require_tls", "true"}});
    ASSERT_TRUE(r.ok()) << errors_of(r);
    std::string expected(original);
    expected.replace(expected.find("require_tls = false"), 19, "require_tls = true");
    EXPECT_EQ(r.text, expected);
}

TEST(config_set, replaces_a_multi_line_value_and_keeps_the_comment_after_it) {
    auto r = set("receive_connector", "from-partner", {{"remote_ip_ranges", R"(["10.0.0.0/8"])"}});
    ASSERT_TRUE(r.ok()) << errors_of(r);
    EXPECT_NE(r.text.find("remote_ip_ranges = [\"10.0.0.0/8\"]\nrequire_tls = false\n"), std::string::npos) << r.text;
    EXPECT_NE(r.text.find("bind = [\"127.0.0.1:2525\"]   # loopback only\n"), std::string::npos);
}

TEST(config_set, keeps_the_comment_on_the_edited_line) {
    auto r = set("server", "", {{"hostname", "mx2.example.test"}});
    ASSERT_TRUE(r.ok()) << errors_of(r);
    std::string expected(original);
    expected.replace(expected.find("\"mx1.example.test\""), 18, "\"mx2.example.test\"");
    EXPECT_EQ(r.text, expected);
}

TEST(config_set, appends_a_missing_key_to_its_own_table) {
    auto r = set("receive_connector", "from-partner", {{"max_message_size", "50MB"}});
    ASSERT_TRUE(r.ok()) << errors_of(r);
    std::string expected(original);
    expected.insert(expected.find("require_tls = false\n") + 20, "max_message_size = \"50MB\"\n");
    EXPECT_EQ(r.text, expected);

    auto last = set("receive_connector", "internal", {{"tls", "none"}});
    ASSERT_TRUE(last.ok()) << errors_of(last);
    expected = original;
    expected.insert(expected.find("bind = [\"127.0.0.1:2526\"]\n") + 26, "tls = \"none\"\n");
    EXPECT_EQ(last.text, expected);
}

TEST(config_set, adds_a_missing_section_or_connector_at_the_end) {
    auto r = set("queue", "", {{"expire", "3d"}});
    ASSERT_TRUE(r.ok()) << errors_of(r);
    EXPECT_EQ(r.text, std::string(original) + "\n[queue]\nexpire = \"3d\"\n");

    // A connector name that is not there is refused, naming those that are ...
    try {
        set("receive_connector", "internl", {{"require_tls", "true"}});
        ADD_FAILURE() << "a misspelt connector name was taken as a new connector";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("no receive_connector is named \"internl\" (there are: from-partner, internal)"),
                  std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("--create"), std::string::npos) << e.what();
    }
    // ... unless a new one is asked for.
    auto c = set_values(original, "postern.toml", "send_connector", "to-partner",
                        {{"address_spaces", R"(["partner.test"])"}}, /*create_connector=*/true);
    ASSERT_TRUE(c.ok()) << errors_of(c);
    EXPECT_EQ(c.text, std::string(original) +
                          "\n[[send_connector]]\nname = \"to-partner\"\naddress_spaces = [\"partner.test\"]\n");
}

TEST(config_set, bare_words_become_strings_and_toml_values_stay_typed) {
    auto r = set("server", "", {{"max_inbound_connections", "500"}, {"user", "mail"}});
    ASSERT_TRUE(r.ok()) << errors_of(r);
    EXPECT_NE(r.text.find("user = \"mail\"\n"), std::string::npos);
    EXPECT_NE(r.text.find("max_inbound_connections = 500\n"), std::string::npos) << r.text;
    // 1.2 is a TOML float, but min_version is a string: it is quoted.
    auto v = set("tls", "", {{"min_version", "1.3"}});
    ASSERT_TRUE(v.ok()) << errors_of(v);
    EXPECT_NE(v.text.find("min_version = \"1.3\"\n"), std::string::npos);
}

TEST(config_set, a_value_cannot_inject_lines) {
    auto r = set("server", "", {{"user", "postern\"\n[evil]\nx = 1"}});
    ASSERT_TRUE(r.ok()) << errors_of(r);
    EXPECT_EQ(r.text.find("\n[evil]"), std::string::npos);
    EXPECT_NE(r.text.find("user = \"postern\\\"\\n[evil]\\nx = 1\"\n"), std::string::npos) << r.text;
}

TEST(config_set, an_invalid_result_is_refused_with_its_line) {
    auto r = set("receive_connector", "from-partner", {{"tls", "none"}, {"require_tls", "true"}});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.errors[0].key, "receive_connector[0].require_tls");
    EXPECT_EQ(r.errors[0].line, 13u);
    auto unknown = set("server", "", {{"hostnme", "x"}});
    ASSERT_FALSE(unknown.ok());
    EXPECT_EQ(unknown.errors[0].key, "server.hostnme");
}

TEST(config_set, malformed_requests_throw) {
    EXPECT_THROW(set("nosuch", "", {{"a", "1"}}), std::invalid_argument);
    EXPECT_THROW(set("receive_connector", "", {{"tls", "none"}}), std::invalid_argument);
    EXPECT_THROW(set("server", "extra", {{"user", "x"}}), std::invalid_argument);
    EXPECT_THROW(set("server", "", {{"a.b", "1"}}), std::invalid_argument);
    EXPECT_THROW(set("server", "", {}), std::invalid_argument);
    EXPECT_THROW(set("server", "", {{"user", "x"}}, "[server\n"), std::invalid_argument);
    EXPECT_THROW(set("server", "", {{"user", "x"}}, "server = { hostname = \"a.test\" }\n"), std::invalid_argument);
}

TEST(config_set, crlf_files_stay_crlf_and_utf8_columns_are_counted_right) {
    std::string text = "[server]\r\nhostname = \"mx.example.test\" # é\r\nuser = \"pøstern\"\r\n";
    auto r = set("server", "", {{"user", "mail"}, {"max_outbound_connections", "7"}}, text);
    ASSERT_TRUE(r.ok()) << errors_of(r);
    EXPECT_EQ(r.text, "[server]\r\nhostname = \"mx.example.test\" # é\r\nuser = \"mail\"\r\nmax_outbound_connections = 7\r\n");
    std::string accented = "[server]\nuser = \"pøstern\" # ü\nhostname = \"mx.example.test\"\n";
    auto a = set("server", "", {{"user", "mail"}}, accented);
    ASSERT_TRUE(a.ok()) << errors_of(a);
    EXPECT_EQ(a.text, "[server]\nuser = \"mail\" # ü\nhostname = \"mx.example.test\"\n");
}

TEST(config_set, writes_atomically_and_keeps_the_mode) {
    auto dir = std::filesystem::temp_directory_path() / "postern_edit_test";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    auto file = dir / "postern.toml";
    {
        std::ofstream out(file);
        out << original;
    }
    ::chmod(file.c_str(), 0640);
    auto link = dir / "link.toml";
    std::filesystem::create_symlink(file, link);

    write_file_atomically(link, "changed\n");
    std::ifstream in(file);
    std::stringstream read;
    read << in.rdbuf();
    EXPECT_EQ(read.str(), "changed\n");
    EXPECT_TRUE(std::filesystem::is_symlink(link));
    struct stat st {};
    ASSERT_EQ(::stat(file.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    // No temporary file is left behind.
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()), 2);

    auto fresh = dir / "new.toml";
    write_file_atomically(fresh, "x\n");
    ASSERT_EQ(::stat(fresh.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace postern::config
