// queue/retry.hpp: when to try a deferred message again, and when to give up.
//
// Pure functions: no clock is read here, so the scheduler passes times in and tests need
// no waiting. DESIGN §3 [queue]: `retry` lists the intervals between attempts; after the
// last listed interval that interval repeats; `expire` is the age at which the message
// bounces (DSN). Each delay gets up to 10% extra, chosen from a seed, so a restart does
// not retry the whole queue in the same second (the thundering herd).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <span>

#include "smtp/envelope.hpp"

namespace postern::queue {

using smtp::envelope;
using smtp::recipient;
using smtp::recipient_state;
using smtp::sys_time;

/// DESIGN §3 default, used when a schedule is empty.
inline constexpr std::array<std::chrono::seconds, 5> default_retry_schedule = {
    std::chrono::minutes(1), std::chrono::minutes(5), std::chrono::minutes(15), std::chrono::minutes(30),
    std::chrono::hours(1)};

/// Delay before the next attempt, after `attempt` failed attempts (1 = the first attempt
/// just failed; 0 is treated as 1). The base is schedule[attempt - 1], or the last
/// interval once the schedule is exhausted; the result lies in [base, base + base / 10].
/// The same (schedule, attempt, jitter_seed) always gives the same delay: seed it with
/// something per message (e.g. a hash of the queue id) so messages spread out.
std::chrono::seconds next_delay(std::span<const std::chrono::seconds> schedule, unsigned attempt,
                                std::uint32_t jitter_seed);

/// True once the message has been queued for `expire` or longer; a clock that went
/// back (now before created) never expires a message early.
bool expired(sys_time created, sys_time now, std::chrono::seconds expire);

}  // namespace postern::queue
