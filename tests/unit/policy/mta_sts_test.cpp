// Unit tests for policy/mta_sts: the TXT record, the policy file, MX patterns (RFC 8461).
#include "policy/mta_sts.hpp"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "policy/sts_store.hpp"

namespace postern::policy {
namespace {

TEST(mta_sts, the_txt_record_gives_its_id_only_when_it_is_the_one_valid_stsv1_record) {
    EXPECT_EQ(sts_record_id({"v=STSv1; id=20160831085700Z;"}), "20160831085700Z");
    EXPECT_EQ(sts_record_id({"v=STSv1;id=abc", "some other text"}), "abc");
    EXPECT_EQ(sts_record_id({"v=STSv1; id=abc; ext=1"}), "abc");
    EXPECT_FALSE(sts_record_id({}));
    EXPECT_FALSE(sts_record_id({"v=STSv1; id=a; ", "v=STSv1; id=b"}));   // two records: none
    EXPECT_FALSE(sts_record_id({"id=abc; v=STSv1"}));                   // v must come first
    EXPECT_FALSE(sts_record_id({"v=STSv1; id=has-dash"}));
    EXPECT_FALSE(sts_record_id({"v=STSv1; id=" + std::string(33, 'a')}));
    EXPECT_FALSE(sts_record_id({"v=STSv1;"}));
}

TEST(mta_sts, a_policy_file_is_read_as_rfc_8461_writes_it) {
    std::string error;
    auto p = parse_sts_policy("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.NET.\r\n"
                              "max_age: 86400\r\nfuture: ignored\r\n",
                              error);
    ASSERT_TRUE(p) << error;
    EXPECT_EQ(p->what, sts_policy::mode::enforce);
    EXPECT_EQ(p->mx, (std::vector<std::string>{"mail.example.com", "*.example.net"}));
    EXPECT_EQ(p->max_age, std::chrono::seconds(86400));
    EXPECT_TRUE(p->lists("MAIL.example.com."));
    EXPECT_TRUE(p->lists("mx1.example.net"));
    EXPECT_FALSE(p->lists("a.b.example.net"));   // one label only
    EXPECT_FALSE(p->lists("example.net"));
    EXPECT_FALSE(p->lists("mail.example.com.evil.test"));

    auto capped = parse_sts_policy("version: STSv1\nmode: testing\nmx: a.test\nmax_age: 99999999\n", error);
    ASSERT_TRUE(capped) << error;
    EXPECT_EQ(capped->max_age, std::chrono::seconds(31557600));

    EXPECT_FALSE(parse_sts_policy("version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n", error));
    EXPECT_FALSE(parse_sts_policy("version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n", error));
    EXPECT_FALSE(parse_sts_policy("version: STSv1\nmode: enforce\nmax_age: 1\n", error));
    EXPECT_EQ(error, "no mx in an enforce or testing policy");
    EXPECT_FALSE(parse_sts_policy("version: STSv1\nmode: enforce\nmx: a.test\n", error));
    EXPECT_FALSE(parse_sts_policy("<html>not a policy</html>", error));
    for (const char* bad : {".", "a..b.test", "*", "*.", "a*.test", "x.*.test", "bad\x19name.test", ".a.test"})
        EXPECT_FALSE(parse_sts_policy(std::string("version: STSv1\nmode: enforce\nmx: ") + bad + "\nmax_age: 1\n", error))
            << bad;
    EXPECT_TRUE(parse_sts_policy("version: STSv1\nmode: none\nmax_age: 1\n", error));
}

TEST(sts_store, policies_survive_a_restart_and_a_damaged_file_is_not_fatal) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("postern-sts-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const auto file = dir / "mta-sts.json";
    sts_policy p;
    p.what = sts_policy::mode::enforce;
    p.mx = {"mx.example.test"};
    p.max_age = std::chrono::seconds(86400);
    p.id = "abc";
    p.fetched_at = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
    {
        sts_store store(file);
        store.put("example.test", p);
    }
    EXPECT_EQ(fs::status(file).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
    sts_store again(file);
    auto back = again.find("example.test");
    ASSERT_TRUE(back);
    EXPECT_EQ(back->id, "abc");
    EXPECT_EQ(back->mx, p.mx);
    EXPECT_EQ(back->fetched_at, p.fetched_at);
    EXPECT_EQ(back->what, sts_policy::mode::enforce);
    EXPECT_FALSE(again.find("other.test"));

    std::ofstream(file) << "{not json";
    sts_store damaged(file);
    EXPECT_EQ(damaged.size(), 0u);

    sts_store small(dir / "small.json", 2);
    for (int i = 0; i < 3; ++i) {
        p.fetched_at += std::chrono::hours(1);
        small.put("d" + std::to_string(i) + ".test", p);
    }
    EXPECT_EQ(small.size(), 2u);
    EXPECT_FALSE(small.find("d0.test"));   // closest to expiry went first
    fs::remove_all(dir);
}

}  // namespace
}  // namespace postern::policy
