#include "queue/queue_id.hpp"

#include <algorithm>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace postern::queue {
namespace {

TEST(queue_id, fixed_width_lowercase_hex) {
    EXPECT_EQ(format_queue_id(0), "0000000000000000");
    EXPECT_EQ(format_queue_id(0x61f0a1b2c3d4eull), "00061f0a1b2c3d4e");
    EXPECT_EQ(parse_queue_id("00061f0a1b2c3d4e"), 0x61f0a1b2c3d4eull);
    EXPECT_EQ(parse_queue_id("ffffffffffffffff"), ~0ull);
}

TEST(queue_id, parse_rejects_anything_else) {
    EXPECT_FALSE(parse_queue_id(""));
    EXPECT_FALSE(parse_queue_id("00061F0A1B2C3D4E"));
    EXPECT_FALSE(parse_queue_id("00061f0a1b2c3d4"));
    EXPECT_FALSE(parse_queue_id("00061f0a1b2c3d4e0"));
    EXPECT_FALSE(parse_queue_id("../../etc/passwd"));
    EXPECT_FALSE(parse_queue_id("00061f0a1b2c3d4g"));
}

TEST(queue_id, same_microsecond_and_clock_steps_back_still_increase) {
    queue_id_generator ids;
    auto a = ids.next(1000);
    auto b = ids.next(1000);
    auto c = ids.next(500);
    auto d = ids.next(2000);
    EXPECT_LT(a, b);
    EXPECT_LT(b, c);
    EXPECT_LT(c, d);
    EXPECT_EQ(d, format_queue_id(2000));
}

TEST(queue_id, floor_from_the_store_is_never_reused) {
    queue_id_generator ids(5000);
    EXPECT_EQ(ids.next(1000), format_queue_id(5001));
}

TEST(queue_id, unique_and_sorted_under_concurrency) {
    queue_id_generator ids;
    std::vector<std::vector<std::string>> per_thread(8);
    std::vector<std::thread> threads;
    for (auto& out : per_thread)
        threads.emplace_back([&ids, &out] {
            for (int i = 0; i < 5000; ++i) out.push_back(ids.next());
        });
    for (auto& t : threads) t.join();
    std::set<std::string> all;
    for (const auto& out : per_thread) {
        EXPECT_TRUE(std::is_sorted(out.begin(), out.end()));
        all.insert(out.begin(), out.end());
    }
    EXPECT_EQ(all.size(), 8u * 5000);
}

}  // namespace
}  // namespace postern::queue
