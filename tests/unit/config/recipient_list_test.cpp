// Recipient lists ([[send_connector]] and [[accepted_domain]] recipients, DESIGN §3).
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "config/recipient_list.hpp"
#include "config/schema.hpp"

namespace postern::config {
namespace {

TEST(recipient_list, addresses_comments_and_case) {
    auto list = recipient_list::parse("# migrated in batch 1\nAlice@Corp.Test\n\n  bob@corp.test   # moved 2026-11-30\n");
    EXPECT_EQ(list->size(), 2u);
    EXPECT_TRUE(list->contains("alice@corp.test"));
    EXPECT_TRUE(list->contains("ALICE@CORP.TEST"));
    EXPECT_TRUE(list->contains("Bob@Corp.test"));
    EXPECT_FALSE(list->contains("carol@corp.test"));
}

TEST(recipient_list, a_bad_line_is_refused_with_its_number) {
    try {
        recipient_list::parse("alice@corp.test\n# fine\nnot an address\n");
        FAIL() << "a bad line was taken";
    } catch (const recipient_list_error& e) {
        EXPECT_EQ(e.line, 3u);
        EXPECT_NE(std::string(e.what()).find("\"not an address\" is not an address"), std::string::npos);
    }
    for (const char* bad : {"@corp.test\n", "alice@\n", "alice@corp..test\n", "<alice@corp.test>\n"})
        EXPECT_THROW(recipient_list::parse(bad), recipient_list_error) << bad;
}

TEST(recipient_list, a_file_without_its_last_newline_is_refused) {
    try {
        recipient_list::parse("alice@corp.test\nbob@corp.te");
        FAIL() << "a half-written file was taken";
    } catch (const recipient_list_error& e) {
        EXPECT_EQ(e.line, 0u);
        EXPECT_NE(std::string(e.what()).find("does not end with a newline"), std::string::npos);
    }
    EXPECT_EQ(recipient_list::parse("")->size(), 0u);
}

TEST(recipient_list, a_hundred_thousand_addresses_load) {
    std::string text;
    for (int i = 0; i < 100000; ++i) text += "user" + std::to_string(i) + "@corp.test\n";
    const auto start = std::chrono::steady_clock::now();
    auto list = recipient_list::parse(text);
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(list->size(), 100000u);
    EXPECT_TRUE(list->contains("USER99999@corp.test"));
    // Not a timing assertion (bench/ measures): recorded so a regression shows in the log.
    RecordProperty("load_ms", static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
}

class lists_in_configuration : public ::testing::Test {
protected:
    std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                ("postern-lists-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
                                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
    void SetUp() override { std::filesystem::create_directories(dir); }
    void TearDown() override { std::filesystem::remove_all(dir); }
    void write(const std::string& name, const std::string& text) { std::ofstream(dir / name) << text; }
    load_result load(const std::string& text) {
        write("postern.toml", text);
        return load_file(dir / "postern.toml");
    }
    static std::string base() {
        return "[server]\nhostname = \"mx.test\"\ndata_dir = \"/tmp/x\"\n"
               "[[send_connector]]\nname = \"to-domino\"\naddress_spaces = [\"corp.test\"]\n"
               "[[send_connector]]\nname = \"to-exchange\"\nrecipients = \"migrated.txt\"\n";
    }
};

TEST_F(lists_in_configuration, lists_load_relative_to_the_file_and_route) {
    write("migrated.txt", "alice@corp.test\n");
    write("users.txt", "alice@corp.test\nbob@corp.test\n");
    auto r = load(base() + "[[accepted_domain]]\nname = \"Corp.Test\"\ntype = \"authoritative\"\nrecipients = \"users.txt\"\n");
    ASSERT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors.front().to_string());
    const auto& c = *r.config;
    ASSERT_TRUE(c.send_connectors[1].recipients);
    EXPECT_TRUE(c.send_connectors[1].recipients->contains("Alice@corp.test"));
    ASSERT_EQ(c.accepted_domains.size(), 1u);
    EXPECT_EQ(c.accepted_domains[0].type, accepted_domain_type::authoritative);
    EXPECT_EQ(all_accepted_domains(c), std::vector<std::string>{"corp.test"});
    EXPECT_NE(find_accepted_domain(c, "CORP.test"), nullptr);
}

TEST_F(lists_in_configuration, mistakes_are_errors_or_warnings_with_lines) {
    write("migrated.txt", "alice@corp.test\nnonsense\n");
    auto r = load(base());
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.errors.front().to_string().find("migrated.txt:2: \"nonsense\" is not an address"), std::string::npos)
        << r.errors.front().to_string();
    EXPECT_EQ(r.errors.front().key, "send_connector[1].recipients");

    write("migrated.txt", "alice@corp.test\n");
    auto twice = load("[server]\nhostname = \"mx.test\"\naccepted_domains = [\"corp.test\"]\n"
                      "[[accepted_domain]]\nname = \"corp.test\"\n[[send_connector]]\nname = \"s\"\naddress_spaces = [\"*\"]\n");
    ASSERT_FALSE(twice.ok());
    EXPECT_NE(twice.errors.front().message.find("also in [server] accepted_domains"), std::string::npos);
    auto no_list = load("[server]\nhostname = \"mx.test\"\n[[accepted_domain]]\nname = \"corp.test\"\n"
                        "type = \"authoritative\"\n[[send_connector]]\nname = \"s\"\naddress_spaces = [\"*\"]\n");
    ASSERT_FALSE(no_list.ok());
    EXPECT_NE(no_list.errors.front().message.find("needs recipients"), std::string::npos);

    write("again.txt", "alice@corp.test\n");
    write("empty.txt", "# nobody yet\n");
    auto warned = load(base() + "[[send_connector]]\nname = \"again\"\nrecipients = \"again.txt\"\n"
                                "[[send_connector]]\nname = \"empty\"\nrecipients = \"empty.txt\"\n");
    ASSERT_TRUE(warned.ok());
    std::string all;
    for (const auto& w : warned.warnings) all += w.to_string() + "\n";
    EXPECT_NE(all.find("alice@corp.test is also listed for send connector \"to-exchange\""), std::string::npos) << all;
    EXPECT_NE(all.find("empty.txt lists no address"), std::string::npos) << all;
}

}  // namespace
}  // namespace postern::config
