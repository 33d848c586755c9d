// tlsrpt/sender.cpp: see sender.hpp.
#include "tlsrpt/sender.hpp"

#include <charconv>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <openssl/rand.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "log/metrics.hpp"
#include "policy/https_fetch.hpp"
#include "policy/state_file.hpp"
#include "tlsrpt/record.hpp"
#include "tlsrpt/report_mail.hpp"

namespace postern::tlsrpt {

namespace asio = boost::asio;
using std::chrono::steady_clock;
using std::chrono::system_clock;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string hex(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char b : bytes) out += fmt::format("{:02x}", b);
    return out;
}

std::string random_hex(std::size_t octets) {
    std::vector<unsigned char> bytes(octets);
    if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) throw std::runtime_error("RAND_bytes failed");
    return hex({reinterpret_cast<const char*>(bytes.data()), bytes.size()});
}

auto utc_day(system_clock::time_point t) { return std::chrono::floor<std::chrono::days>(t); }

std::uint64_t sessions_of(const policy::tlsrpt_period& period, const std::string& domain) {
    std::uint64_t n = 0;
    if (auto it = period.domains.find(domain); it != period.domains.end())
        for (const auto& [key, counts] : it->second) {
            n += counts.successes;
            for (const auto& [failure, count] : counts.failures) n += count;
        }
    return n;
}

/// A POST not yet made, or that failed and is to be tried again (§5.4). Kept in
/// data_dir/tlsrpt-outbox.json (0600) until it succeeds or is given up, so a restart or
/// a crash between closing a period and posting its reports loses none of them.
struct pending_post {
    std::string domain;
    report_uri uri;
    std::string gzipped;
    std::size_t retries_done = 0;
    system_clock::time_point due;
    bool busy = false;   // an attempt is under way
};

std::optional<std::string> unhex(const std::string& text) {
    if (text.size() % 2 != 0) return std::nullopt;
    std::string out;
    for (std::size_t i = 0; i < text.size(); i += 2) {
        unsigned value = 0;
        auto [end, ec] = std::from_chars(text.data() + i, text.data() + i + 2, value, 16);
        if (ec != std::errc() || end != text.data() + i + 2) return std::nullopt;
        out += static_cast<char>(value);
    }
    return out;
}

long long epoch_seconds(system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

struct sender::impl {
    impl(const config::configuration& c, policy::tlsrpt_ledger& l, route::next_hop_source& d, queue::store& s,
         std::function<std::shared_ptr<SSL_CTX>()> h, sender_options o)
        : cfg(std::make_shared<const config::configuration>(c)), ledger(l), dns(d), store(s), https(std::move(h)),
          options(std::move(o)),
          outbox(c.server.data_dir.empty() ? std::filesystem::path() : c.server.data_dir / "tlsrpt-outbox.json") {}

    std::shared_ptr<const config::configuration> config() {
        std::lock_guard lock(mutex);
        return cfg;
    }

    /// Closes the period at `now` and sends its reports (or drops them when disabled).
    asio::awaitable<std::vector<outcome>> close_and_send(system_clock::time_point now) {
        const auto c = config();
        auto period = ledger.close(now);
        const auto span = fmt::format("{} to {}", policy::iso_utc(period.start), policy::iso_utc(period.end));
        if (!c->tls_rpt.enabled) {
            spdlog::info("tlsrpt: period {} closed ({} domain(s)); [tls_rpt] enabled = false, no reports sent", span,
                         period.domains.size());
            co_return std::vector<outcome>{};
        }
        spdlog::info("tlsrpt: period {} closed; reports for {} domain(s)", span, period.domains.size());
        const auto id = next_period++;
        closing[id] = std::move(period);
        save_outbox();   // the closed period waits in the outbox until every domain's report is handed on
        auto outcomes = co_await send_period(id);
        co_return outcomes;
    }

    /// The reports of closing[id], one domain after another; each domain leaves the
    /// outbox once its report is queued (mail) or waits there as a POST.
    asio::awaitable<std::vector<outcome>> send_period(std::uint64_t id) {
        const auto c = config();
        std::vector<outcome> outcomes;
        for (;;) {
            auto it = closing.find(id);   // a map node: stays put until erased below
            if (it == closing.end() || it->second.domains.empty()) break;
            const std::string domain = it->second.domains.begin()->first;
            auto some = co_await send_domain(*c, it->second, domain);
            outcomes.insert(outcomes.end(), some.begin(), some.end());
            it->second.domains.erase(domain);
            save_outbox();
        }
        closing.erase(id);
        save_outbox();
        co_return outcomes;
    }

    /// §3: where `domain` wants its reports; nullopt (with the reason in `why`) when nowhere.
    asio::awaitable<std::optional<record>> addresses_of(const std::string& domain, std::string& why) {
        const auto answer = co_await route::resolve_txt_async(dns, "_smtp._tls." + domain);
        if (answer.what == route::txt_answer::kind::failed) {
            why = "the _smtp._tls lookup failed: " + answer.reason;
            co_return std::nullopt;
        }
        if (answer.what == route::txt_answer::kind::none) {
            why = "no TLS-RPT record";
            co_return std::nullopt;
        }
        co_return select_record(answer.texts, why);
    }

    asio::awaitable<std::vector<outcome>> send_domain(const config::configuration& c,
                                                      const policy::tlsrpt_period& period, const std::string& domain) {
        std::vector<outcome> outcomes;
        std::string why;
        const auto where = co_await addresses_of(domain, why);
        if (!where) {
            spdlog::info("tlsrpt: no report for {} ({} session(s)): {}", domain, sessions_of(period, domain), why);
            outcomes.push_back({domain, "", false, why});
            co_return outcomes;
        }
        const auto unique = random_hex(8);
        std::string start;   // "20261203T000000Z": a report id is a msg-id (§5.3 Subject)
        for (char ch : policy::iso_utc(period.start))
            if (ch != '-' && ch != ':') start += ch;
        const auto report_id = fmt::format("{}.{}.{}@{}", start, domain, unique, c.tls_rpt.submitter);
        const auto report = policy::tlsrpt_report(period, domain, c.tls_rpt.organization_name,
                                                  c.tls_rpt.contact_info, report_id);
        const auto gzipped = gzip(report.dump());
        std::vector<std::string> mail_to;
        std::set<std::string> seen;
        std::vector<std::uint64_t> posts;
        for (const auto& uri : where->rua) {
            if (uri.what == report_uri::scheme::mailto) {
                if (seen.insert(uri.address).second) mail_to.push_back(uri.address);
                continue;
            }
            posts.push_back(next_post);
            pending[next_post++] = pending_post{domain, uri, gzipped, 0, system_clock::now(), false};
        }
        save_outbox();   // before any attempt: a crash from here on still posts them after the restart
        if (!mail_to.empty()) {
            report_mail m{c.tls_rpt.from_address, mail_to, domain, c.tls_rpt.submitter, report_id,
                          period.start, period.end, system_clock::now(),
                          report_filename(c.tls_rpt.submitter, domain, period.start, period.end, unique), gzipped,
                          unique};
            auto queued = co_await queue_mail(std::move(m));
            for (const auto& address : mail_to) outcomes.push_back({domain, "mailto:" + address, queued.ok, queued.detail});
        }
        for (const auto id : posts) {
            auto posted = co_await attempt(id);
            outcomes.push_back(std::move(posted));
        }
        co_return outcomes;
    }

    /// One POST of pending[id]; on failure it waits for the next retry, or is given up.
    asio::awaitable<outcome> attempt(std::uint64_t id) {
        auto& p = pending.at(id);   // a map node: stays put while other entries come and go
        p.busy = true;
        outcome out{p.domain, p.uri.uri, false, ""};
        const auto resolved = co_await route::resolve_host_async(dns, p.uri.host);
        policy::https_result got;
        if (resolved.first.addresses.empty()) {
            got.error = fmt::format("{} has no address{}", p.uri.host, resolved.second.empty() ? "" : ": " + resolved.second);
        } else {
            auto executor = co_await asio::this_coro::executor;
            policy::https_limits limits;
            limits.timeout = std::chrono::seconds(60);
            for (const auto& address : resolved.first.addresses) {
                got = co_await policy::https_post(executor, {address, p.uri.port}, p.uri.host, p.uri.path,
                                                  "application/tlsrpt+gzip", p.gzipped, https(), limits);
                if (got.ok) break;
            }
        }
        p.busy = false;
        log::metrics::global().tlsrpt_report(true, got.ok);
        out.ok = got.ok;
        out.detail = got.ok ? "posted" : got.error;
        if (got.ok) {
            spdlog::info("tlsrpt: report for {} posted to {}", p.domain, p.uri.uri);
            pending.erase(id);
        } else if (p.retries_done < options.post_retries.size()) {
            const auto wait = options.post_retries[p.retries_done++];
            p.due = system_clock::now() + wait;
            out.detail += fmt::format("; tried again in {}s", wait.count());
            spdlog::warn("tlsrpt: report for {} not posted to {}: {}", p.domain, p.uri.uri, out.detail);
        } else {
            out.detail += "; given up";
            spdlog::warn("tlsrpt: report for {} not posted to {}: {}", p.domain, p.uri.uri, out.detail);
            pending.erase(id);
        }
        save_outbox();
        co_return out;
    }

    void save_outbox() const {
        if (outbox.empty()) return;
        nlohmann::json posts = nlohmann::json::array();
        for (const auto& [id, p] : pending)
            posts.push_back({{"domain", p.domain}, {"uri", p.uri.uri}, {"report", hex(p.gzipped)},
                             {"retries_done", p.retries_done}, {"due", epoch_seconds(p.due)}});
        nlohmann::json periods = nlohmann::json::array();
        for (const auto& [id, period] : closing) periods.push_back(policy::tlsrpt_period_json(period));
        policy::write_state_file(outbox, {{"version", 1}, {"posts", posts}, {"periods", periods}}, "TLS-RPT outbox");
    }

    void load_outbox() {
        const auto doc = policy::read_state_file(outbox, "TLS-RPT outbox");
        if (!doc) return;
        // An entry of the wrong shape is dropped with a warning; the others still go out.
        for (const auto& j : doc->value("posts", nlohmann::json::array())) {
            try {
                std::string error;
                auto uri = parse_report_uri(j.at("uri").get<std::string>(), error);
                auto gzipped = unhex(j.at("report").get<std::string>());
                if (!uri || uri->what != report_uri::scheme::https || !gzipped) throw std::runtime_error("bad uri or report");
                pending[next_post++] = pending_post{
                    j.value("domain", std::string()), std::move(*uri), std::move(*gzipped),
                    j.value("retries_done", std::size_t{0}),
                    system_clock::time_point(std::chrono::seconds(j.value("due", 0LL))), false};
            } catch (const std::exception& e) {
                spdlog::warn("tlsrpt: a POST in {} is damaged ({}); dropped", outbox.string(), e.what());
            }
        }
        for (const auto& j : doc->value("periods", nlohmann::json::array())) {
            try {
                closing[next_period++] = policy::tlsrpt_period_from(j);
            } catch (const std::exception& e) {
                spdlog::warn("tlsrpt: a closed period in {} is damaged ({}); its reports are lost", outbox.string(),
                             e.what());
            }
        }
        if (!pending.empty() || !closing.empty())
            spdlog::info("tlsrpt: from before: {} report POST(s) waiting, {} closed period(s) not yet sent",
                         pending.size(), closing.size());
    }

    asio::awaitable<outcome> queue_mail(report_mail m) {
        smtp::envelope env;
        env.mail_from = "";   // the null reverse path: a failure of a report is never reported
        for (const auto& address : m.to) {
            smtp::recipient r;
            r.address = address;
            env.recipients.push_back(std::move(r));
        }
        env.received_at = m.now;
        env.receive_connector = std::string(smtp::tls_report_origin);
        env.client_helo = m.submitter;
        env.tls_optional = true;   // it carries TLS-Required: No (RFC 8689 §5)
        const auto domain = m.policy_domain;
        // A named lambda holding a shared pointer: GCC 12 moves temporaries of a co_await
        // expression into the coroutine frame as raw bytes (see route::detail::await_callback).
        auto message = std::make_shared<std::pair<smtp::envelope, std::string>>(std::move(env), compose(m));
        auto commit = [this, message](auto done) { store.commit(message->first, message->second, std::move(done)); };
        auto committed = co_await route::detail::await_callback<queue::commit_result>(commit);
        log::metrics::global().tlsrpt_report(false, committed.ok);
        outcome out{domain, "", committed.ok, committed.ok ? "queued as " + committed.id : committed.reason};
        if (committed.ok)
            spdlog::info("tlsrpt: report for {} queued as {} to {}", domain, committed.id, fmt::join(m.to, ", "));
        else
            spdlog::warn("tlsrpt: report for {} not queued: {}", domain, committed.reason);
        co_return out;
    }

    /// Once a tick: the period closes when the UTC day changed; due POSTs are tried again.
    asio::awaitable<void> run() {
        load_outbox();
        std::vector<std::uint64_t> unsent;
        for (const auto& [id, period] : closing) unsent.push_back(id);
        for (const auto id : unsent) {
            auto sent = co_await send_period(id);
            (void)sent;   // each outcome is in the server log
        }
        asio::steady_timer timer(co_await asio::this_coro::executor);
        for (;;) {
            const auto now = system_clock::now();
            if (utc_day(ledger.started()) < utc_day(now)) {
                auto sent = co_await close_and_send(now);
                (void)sent;   // each outcome is in the server log
            }
            std::vector<std::uint64_t> due;
            for (const auto& [id, p] : pending)
                if (!p.busy && p.due <= system_clock::now()) due.push_back(id);
            for (const auto id : due) {
                if (!pending.contains(id) || pending.at(id).busy) continue;
                auto again = co_await attempt(id);
                (void)again;
            }
            // Wake at the next midnight UTC, or at the next tick, whichever comes first.
            const auto to_midnight = utc_day(now) + std::chrono::days(1) - now + std::chrono::milliseconds(10);
            timer.expires_after(std::min<steady_clock::duration>(
                options.tick, std::chrono::duration_cast<steady_clock::duration>(to_midnight)));
            auto [ec] = co_await timer.async_wait(use_tuple);
            if (ec) co_return;
        }
    }

    std::mutex mutex;
    std::shared_ptr<const config::configuration> cfg;
    policy::tlsrpt_ledger& ledger;
    route::next_hop_source& dns;
    queue::store& store;
    std::function<std::shared_ptr<SSL_CTX>()> https;
    sender_options options;
    std::filesystem::path outbox;
    std::map<std::uint64_t, pending_post> pending;   // on the sender's thread only
    std::uint64_t next_post = 0;
    std::map<std::uint64_t, policy::tlsrpt_period> closing;   // closed, reports not all handed on yet
    std::uint64_t next_period = 0;
    asio::io_context io;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
    std::thread thread;
};

sender::sender(const config::configuration& cfg, policy::tlsrpt_ledger& ledger, route::next_hop_source& dns,
               queue::store& store, std::function<std::shared_ptr<SSL_CTX>()> https, sender_options options)
    : impl_(std::make_unique<impl>(cfg, ledger, dns, store, std::move(https), std::move(options))) {}

sender::~sender() { stop(); }

void sender::start() {
    auto& d = *impl_;
    if (d.thread.joinable()) return;
    d.work.emplace(d.io.get_executor());
    asio::co_spawn(d.io, d.run(), [](std::exception_ptr e) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            spdlog::error("tlsrpt: reports stopped: {}", ex.what());
        }
    });
    d.thread = std::thread([&d] { d.io.run(); });
}

void sender::stop() {
    auto& d = *impl_;
    if (!d.thread.joinable()) return;
    d.work.reset();
    d.io.stop();
    d.thread.join();
}

void sender::update_configuration(const config::configuration& cfg) {
    std::lock_guard lock(impl_->mutex);
    impl_->cfg = std::make_shared<const config::configuration>(cfg);
}

std::vector<outcome> sender::send_now(std::chrono::seconds limit, std::string& refusal) {
    auto& d = *impl_;
    if (!d.config()->tls_rpt.enabled) {
        refusal = "[tls_rpt] enabled is false: no reports are sent (the counts go on; postern tlsrpt show)";
        return {};
    }
    if (!d.thread.joinable()) {
        refusal = "the report sender is not running";
        return {};
    }
    auto promise = std::make_shared<std::promise<std::vector<outcome>>>();
    auto future = promise->get_future();
    asio::co_spawn(d.io, d.close_and_send(system_clock::now()),
                   [promise](std::exception_ptr e, std::vector<outcome> outcomes) {
                       if (e) promise->set_exception(e);
                       else promise->set_value(std::move(outcomes));
                   });
    if (future.wait_for(limit) != std::future_status::ready) {
        refusal = fmt::format("still sending after {}s; the server log says how it ends", limit.count());
        return {};
    }
    try {
        return future.get();
    } catch (const std::exception& e) {
        refusal = e.what();
        return {};
    }
}

}  // namespace postern::tlsrpt
