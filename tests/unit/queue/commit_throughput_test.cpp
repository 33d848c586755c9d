// Group-commit throughput figures. Disabled by default (timing, not correctness); run with
//   unit_queue --gtest_also_run_disabled_tests --gtest_filter='*commit_throughput*'
// POSTERN_QUEUE_BENCH_DIR picks the file system to measure (default: the temp dir).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "queue/store.hpp"
#include "unit/queue/test_support.hpp"

namespace postern::queue {
namespace {

struct figures {
    double commits_per_second;
    double syncs_per_message;
    double p50_ms, p99_ms;
};

figures measure(int threads, int per_thread, std::size_t body_size) {
    const char* base = std::getenv("POSTERN_QUEUE_BENCH_DIR");
    testing::temp_dir scratch;
    auto dir = (base ? std::filesystem::path(base) : scratch.path()) / ("bench-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    figures f{};
    {
        auto s = open_rocksdb_store({.dir = dir, .min_free = 0});
        std::string body(body_size, 'b');
        std::vector<std::vector<double>> latencies(threads);
        auto start = std::chrono::steady_clock::now();
        std::vector<std::thread> workers;
        for (int t = 0; t < threads; ++t)
            workers.emplace_back([&, t] {
                for (int i = 0; i < per_thread; ++i) {
                    auto begin = std::chrono::steady_clock::now();
                    auto r = testing::commit_and_wait(*s, testing::sample_envelope(), body);
                    latencies[t].push_back(
                        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin).count());
                    if (!r.ok) ADD_FAILURE() << r.reason;
                }
            });
        for (auto& w : workers) w.join();
        double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::vector<double> all;
        for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
        std::sort(all.begin(), all.end());
        auto st = s->stats();
        f.commits_per_second = static_cast<double>(st.commits) / seconds;
        f.syncs_per_message = static_cast<double>(st.syncs) / static_cast<double>(st.commits);
        f.p50_ms = all[all.size() / 2];
        f.p99_ms = all[all.size() * 99 / 100];
    }
    std::filesystem::remove_all(dir);
    return f;
}

TEST(DISABLED_commit_throughput, one_and_sixteen_threads) {
    for (std::size_t body : {std::size_t{2 * 1024}, std::size_t{64 * 1024}})
        for (int threads : {1, 4, 16, 64}) {
            int per_thread = std::max(50, 4000 / threads);
            auto f = measure(threads, per_thread, body);
            std::printf("body %6zu B, %2d threads: %8.0f commits/s, %.3f syncs/message, latency p50 %.2f ms p99 %.2f ms\n",
                        body, threads, f.commits_per_second, f.syncs_per_message, f.p50_ms, f.p99_ms);
            if (threads > 1) {
                EXPECT_LT(f.syncs_per_message, 1.0);
            }
        }
}

}  // namespace
}  // namespace postern::queue
