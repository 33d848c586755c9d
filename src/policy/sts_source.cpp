// policy/sts_source.cpp: see sts_source.hpp.
#include "policy/sts_source.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "policy/https_fetch.hpp"

namespace postern::policy {

namespace asio = boost::asio;

namespace {

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    while (!s.empty() && s.back() == '.') s.pop_back();
    return s;
}

}  // namespace

asio::awaitable<std::optional<sts_policy>> mta_sts_source::fetch(route::next_hop_source& dns,
                                                                         const std::string& domain,
                                                                         std::uint16_t port,
                                                                         std::shared_ptr<SSL_CTX> https,
                                                                         sts_view& view) {
    const std::string host = "mta-sts." + domain;
    auto resolved = co_await route::resolve_host_async(dns, host);
    if (resolved.first.addresses.empty()) {
        view.problem = fmt::format("MTA-STS policy host {} has no address{}", host,
                                   resolved.second.empty() ? "" : ": " + resolved.second);
        view.result = "sts-policy-fetch-error";
        co_return std::nullopt;
    }
    auto executor = co_await asio::this_coro::executor;
    https_result got;
    for (const auto& address : resolved.first.addresses) {
        got = co_await https_get(executor, {address, port}, host, "/.well-known/mta-sts.txt", https, {});
        if (got.ok) break;
    }
    if (!got.ok) {
        view.problem = fmt::format("MTA-STS policy from {}: {}", host, got.error);
        view.result = got.certificate_problem ? "sts-webpki-invalid" : "sts-policy-fetch-error";
        co_return std::nullopt;
    }
    std::string error;
    auto parsed = parse_sts_policy(got.body, error);
    if (!parsed) {
        view.problem = fmt::format("MTA-STS policy from {} is invalid: {}", host, error);
        view.result = "sts-policy-invalid";
        co_return std::nullopt;
    }
    co_return parsed;
}

asio::awaitable<sts_view> mta_sts_source::lookup(route::next_hop_source& dns, const std::string& domain_in,
                                                 std::uint16_t port, std::shared_ptr<SSL_CTX> https) {
    const std::string domain = lower(domain_in);
    const auto now = std::chrono::system_clock::now();
    sts_view view;
    auto cached = store_.find(domain);
    if (cached && cached->expired(now)) cached.reset();
    auto txt = co_await route::resolve_txt_async(dns, "_mta-sts." + domain);
    std::optional<std::string> id;
    if (txt.what == route::txt_answer::kind::records) id = sts_record_id(txt.texts);
    // §5.1: fetch when the record names a policy we do not hold, or ours is half-aged.
    const bool stale = cached && now >= cached->fetched_at + cached->max_age / 2;
    if (id && (!cached || cached->id != *id || stale)) {
        {
            std::lock_guard lock(failures_mutex_);
            auto failed = failures_.find(domain + "\n" + *id);
            if (failed != failures_.end() && failed->second.until > std::chrono::steady_clock::now()) {
                view.problem = failed->second.problem + " (not asked again yet)";
                view.result = failed->second.result;
                view.policy = std::move(cached);
                co_return view;
            }
        }
        if (auto fresh = co_await fetch(dns, domain, port, std::move(https), view)) {
            fresh->id = *id;
            fresh->fetched_at = now;
            store_.put(domain, *fresh);
            spdlog::info("MTA-STS: {} policy for {} (id {}, max_age {}s, mx {})", to_string(fresh->what),
                         domain, fresh->id, fresh->max_age.count(), fmt::join(fresh->mx, ", "));
            view.policy = std::move(fresh);
            co_return view;
        }
        spdlog::warn("MTA-STS: {}{}", view.problem, cached ? "; the cached policy stays in force" : "");
        std::lock_guard lock(failures_mutex_);
        if (failures_.size() > 10000) failures_.clear();   // bounded; a cleared entry only means one more fetch
        failures_[domain + "\n" + *id] = {std::chrono::steady_clock::now() + std::chrono::minutes(5), view.problem,
                                          view.result};
    }
    // A record that is gone, or a failed DNS answer, leaves a cached policy in force (§5.1).
    view.policy = std::move(cached);
    co_return view;
}

}  // namespace postern::policy
