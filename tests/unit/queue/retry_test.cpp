#include "queue/retry.hpp"

#include <set>
#include <vector>

#include <gtest/gtest.h>

namespace postern::queue {
namespace {

using namespace std::chrono_literals;

const std::vector<std::chrono::seconds> schedule = {1min, 5min, 15min, 30min, 1h};

void expect_within_ten_percent(std::chrono::seconds delay, std::chrono::seconds base) {
    EXPECT_GE(delay, base);
    EXPECT_LE(delay, base + base / 10);
}

TEST(retry, follows_the_schedule_then_repeats_the_last_interval) {
    expect_within_ten_percent(next_delay(schedule, 1, 7), 1min);
    expect_within_ten_percent(next_delay(schedule, 2, 7), 5min);
    expect_within_ten_percent(next_delay(schedule, 3, 7), 15min);
    expect_within_ten_percent(next_delay(schedule, 4, 7), 30min);
    expect_within_ten_percent(next_delay(schedule, 5, 7), 1h);
    expect_within_ten_percent(next_delay(schedule, 6, 7), 1h);
    expect_within_ten_percent(next_delay(schedule, 4'000'000'000u, 7), 1h);
}

TEST(retry, attempt_zero_counts_as_the_first) {
    expect_within_ten_percent(next_delay(schedule, 0, 7), 1min);
}

TEST(retry, jitter_stays_within_ten_percent_for_every_seed) {
    for (std::uint32_t seed = 0; seed < 5000; ++seed)
        for (unsigned attempt = 1; attempt <= 7; ++attempt) {
            auto base = schedule[std::min<std::size_t>(attempt - 1, schedule.size() - 1)];
            expect_within_ten_percent(next_delay(schedule, attempt, seed), base);
        }
}

TEST(retry, same_inputs_same_delay) {
    for (std::uint32_t seed : {0u, 1u, 42u, 0xffffffffu})
        EXPECT_EQ(next_delay(schedule, 3, seed), next_delay(schedule, 3, seed));
}

TEST(retry, different_seeds_spread_the_retries) {
    std::set<std::chrono::seconds> delays;
    for (std::uint32_t seed = 0; seed < 1000; ++seed) delays.insert(next_delay(schedule, 5, seed));
    // 1h + [0, 360s]: a thousand messages should land on many different seconds.
    EXPECT_GT(delays.size(), 200u);
    EXPECT_EQ(*delays.begin() >= 1h, true);
}

TEST(retry, short_intervals_get_no_jitter_below_a_second) {
    const std::vector<std::chrono::seconds> quick = {5s};
    for (std::uint32_t seed = 0; seed < 100; ++seed) EXPECT_EQ(next_delay(quick, 1, seed), 5s);
    const std::vector<std::chrono::seconds> zero = {0s};
    EXPECT_EQ(next_delay(zero, 1, 3), 0s);
}

TEST(retry, empty_schedule_uses_the_default) {
    expect_within_ten_percent(next_delay({}, 1, 9), 1min);
    expect_within_ten_percent(next_delay({}, 9, 9), 1h);
}

TEST(retry, expired_at_exactly_the_expiry_age) {
    sys_time created{std::chrono::hours(1000)};
    EXPECT_FALSE(expired(created, created, 48h));
    EXPECT_FALSE(expired(created, created + 48h - 1s, 48h));
    EXPECT_TRUE(expired(created, created + 48h, 48h));
    EXPECT_TRUE(expired(created, created + 72h, 48h));
}

TEST(retry, a_clock_that_went_back_does_not_expire) {
    sys_time created{std::chrono::hours(1000)};
    EXPECT_FALSE(expired(created, created - 100h, 48h));
    EXPECT_FALSE(expired(created, created - 1s, 0s));
}

}  // namespace
}  // namespace postern::queue
