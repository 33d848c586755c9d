// Unit tests for policy/downgrade_memory: ranks, renewal, expiry, persistence, bounds.
#include "policy/downgrade_memory.hpp"

#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

namespace postern::policy {
namespace {

using namespace std::chrono_literals;

const sys_time t0 = sys_time(std::chrono::seconds(1'800'000'000));

TEST(downgrade_memory, only_dane_and_mta_sts_count_and_lower_verdicts_are_caught) {
    downgrade_memory m("", 30 * 24h);
    m.seen("a.test", "pkix", "mx.a.test", t0);
    m.seen("a.test", "opportunistic", "mx.a.test", t0);
    EXPECT_FALSE(m.find("a.test", t0));

    m.seen("a.test", "mta-sts", "mx.a.test", t0);
    EXPECT_TRUE(m.would_lower("a.test", "opportunistic", t0));
    EXPECT_TRUE(m.would_lower("a.test", "cleartext", t0));
    EXPECT_FALSE(m.would_lower("a.test", "mta-sts", t0));
    EXPECT_FALSE(m.would_lower("a.test", "dane-ta", t0));
    m.seen("a.test", "dane-ee", "mx2.a.test", t0 + 1h);
    auto e = m.would_lower("a.test", "mta-sts", t0 + 1h);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->verdict, "dane-ee");
    EXPECT_EQ(e->mx, "mx2.a.test");
    EXPECT_FALSE(m.would_lower("b.test", "cleartext", t0));
}

TEST(downgrade_memory, each_success_renews_and_an_entry_expires_after_max_age) {
    downgrade_memory m("", 10 * 24h);
    m.seen("a.test", "dane-ta", "mx.a.test", t0);
    m.seen("a.test", "dane-ta", "mx.a.test", t0 + 9 * 24h);   // renewed
    EXPECT_TRUE(m.would_lower("a.test", "opportunistic", t0 + 15 * 24h));
    EXPECT_FALSE(m.would_lower("a.test", "opportunistic", t0 + 20 * 24h));   // expired
    EXPECT_TRUE(m.entries(t0 + 20 * 24h).empty());
}

TEST(downgrade_memory, kept_across_restarts_with_events_and_forgotten_on_request) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("postern-downgrade-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const auto file = dir / "downgrade.json";
    {
        downgrade_memory m(file);
        m.seen("a.test", "dane-ee", "mx.a.test", t0);
        m.note("a.test", {t0 + 1h, "mx.a.test", "opportunistic", "deferred"});
    }
    EXPECT_EQ(fs::status(file).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
    downgrade_memory again(file);
    auto e = again.find("a.test", t0 + 2h);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->verdict, "dane-ee");
    EXPECT_EQ(e->first_seen, t0);
    ASSERT_EQ(e->events.size(), 1u);
    EXPECT_EQ(e->events[0].action, "deferred");
    EXPECT_TRUE(again.forget("a.test"));
    EXPECT_FALSE(again.forget("a.test"));
    EXPECT_FALSE(downgrade_memory(file).find("a.test", t0));
    fs::remove_all(dir);
}

TEST(downgrade_memory, the_table_is_bounded) {
    downgrade_memory m("", 30 * 24h, 2);
    m.seen("a.test", "dane-ee", "mx", t0);
    m.seen("b.test", "dane-ee", "mx", t0 + 1h);
    m.seen("c.test", "dane-ee", "mx", t0 + 2h);
    EXPECT_EQ(m.entries(t0 + 3h).size(), 2u);
    EXPECT_FALSE(m.find("a.test", t0 + 3h));
}

}  // namespace
}  // namespace postern::policy
