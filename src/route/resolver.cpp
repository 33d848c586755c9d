// route/resolver.cpp: MX and address lookups through libunbound, with DNSSEC status.
//
// Threading. libunbound offers two asynchronous modes: by default (ub_ctx_async(ctx, 0))
// it forks a helper process on the first query; with ub_ctx_async(ctx, 1) it runs a
// helper thread instead. We use the thread: forking a multi-threaded server that holds
// sockets, the key ring and the queue store is fragile (only async-signal-safe calls
// are allowed in the child, every descriptor is duplicated) and a forked helper would
// outlive a crash of ours. Results come back over a pipe (ub_fd); one dispatcher thread
// of ours polls that pipe together with a wake-up pipe, calls ub_process() and runs the
// callbacks. ub_wait() is not used: it cannot be woken for new requests or shutdown.
//
// Every libunbound call and every piece of per-lookup state belongs to the dispatcher
// thread. resolve() only queues a request and wakes it, so a callback can never run
// before the async id of its query is known (needed for ub_cancel on timeout).
//
// Rules: route/mx_rules.hpp (pure, tested without DNS). Standards: RFC 5321 §5.1,
// RFC 7505, RFC 4035 §4.3; RFC 6761 §6.2 for the special-use "test." domain, which
// libunbound answers itself (NXDOMAIN) unless told that the zone is transparent.
#include "route/resolver.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <unbound.h>

#include "route/address_space.hpp"
#include "route/dns_records.hpp"
#include "route/mx_rules.hpp"

namespace postern::route {
namespace {

constexpr int rr_type_a = 1;
constexpr int rr_type_mx = 15;
constexpr int rr_type_aaaa = 28;
constexpr int rr_type_tlsa = 52;
constexpr int rr_type_txt = 16;
constexpr int rr_class_in = 1;

std::string rcode_name(int rcode) {
    switch (rcode) {
    case 1: return "FORMERR";
    case 2: return "SERVFAIL";
    case 4: return "NOTIMP";
    case 5: return "REFUSED";
    default: return fmt::format("rcode {}", rcode);
    }
}

/// What one libunbound answer means. A DNSSEC-bogus answer usually carries rcode
/// NOERROR and even data, so `bogus` is checked before anything else.
answer_outcome classify(int err, const ub_result* result) {
    if (err != 0) return {answer_kind::failed, dnssec::insecure, ub_strerror(err)};
    if (result == nullptr) return {answer_kind::failed, dnssec::insecure, "no result"};
    if (result->bogus)
        return {answer_kind::bogus, dnssec::bogus, result->why_bogus ? result->why_bogus : ""};
    const dnssec status = result->secure ? dnssec::secure : dnssec::insecure;
    if (result->rcode == 3 || result->nxdomain) return {answer_kind::nxdomain, status, "NXDOMAIN"};
    if (result->rcode != 0) return {answer_kind::failed, status, rcode_name(result->rcode)};
    if (result->havedata) return {answer_kind::data, status, {}};
    return {answer_kind::nodata, status, {}};
}

std::span<const std::uint8_t> rdata_at(const ub_result* result, int i) {
    return {reinterpret_cast<const std::uint8_t*>(result->data[i]), static_cast<std::size_t>(result->len[i])};
}

mx_answer parse_mx(int err, const ub_result* result) {
    mx_answer answer{classify(err, result), {}};
    if (answer.outcome.kind != answer_kind::data) return answer;
    for (int i = 0; result->data[i] != nullptr; ++i)
        if (auto mx = decode_mx(rdata_at(result, i))) answer.records.push_back(std::move(*mx));
    return answer;
}

/// Lower case, without the trailing dot.
std::string lower_name(std::string name) {
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    while (!name.empty() && name.back() == '.') name.pop_back();
    return name;
}

address_answer parse_addresses(int err, const ub_result* result, int rrtype) {
    address_answer answer{classify(err, result), {}, {}};
    if (answer.outcome.kind != answer_kind::data) return answer;
    for (int i = 0; result->data[i] != nullptr; ++i) {
        auto address = rrtype == rr_type_a ? decode_a(rdata_at(result, i)) : decode_aaaa(rdata_at(result, i));
        if (address) answer.addresses.push_back(*address);
    }
    if (answer.addresses.empty()) answer.outcome = {answer_kind::failed, answer.outcome.status, "unreadable data"};
    if (result->canonname != nullptr && result->qname != nullptr) {
        auto canonical = lower_name(result->canonname), asked = lower_name(result->qname);
        if (canonical != asked) answer.canonical = std::move(canonical);
    }
    return answer;
}

tlsa_answer parse_tlsa(int err, const ub_result* result, const std::string& name) {
    const auto outcome = classify(err, result);
    tlsa_answer answer;
    answer.status = outcome.status;
    switch (outcome.kind) {
    case answer_kind::data:
        answer.what = tlsa_answer::kind::records;
        for (int i = 0; result->data[i] != nullptr; ++i)
            if (auto r = decode_tlsa(rdata_at(result, i))) answer.records.push_back(std::move(*r));
        if (answer.records.empty()) {
            answer.what = tlsa_answer::kind::failed;
            answer.reason = fmt::format("unreadable TLSA data for {}", name);
        }
        return answer;
    case answer_kind::nodata:
    case answer_kind::nxdomain: answer.what = tlsa_answer::kind::none; return answer;
    case answer_kind::bogus:
        answer.what = tlsa_answer::kind::bogus;
        answer.reason = fmt::format("DNSSEC-bogus TLSA answer for {}: {}", name, outcome.detail);
        return answer;
    case answer_kind::failed:
    case answer_kind::timed_out:
        answer.what = tlsa_answer::kind::failed;
        answer.reason = fmt::format("{} for {} TLSA", outcome.kind == answer_kind::timed_out ? "timeout" : outcome.detail,
                                    name);
        return answer;
    }
    return answer;
}

txt_answer parse_txt(int err, const ub_result* result, const std::string& name) {
    const auto outcome = classify(err, result);
    txt_answer answer;
    answer.status = outcome.status;
    switch (outcome.kind) {
    case answer_kind::data:
        answer.what = txt_answer::kind::records;
        for (int i = 0; result->data[i] != nullptr; ++i)
            if (auto t = decode_txt(rdata_at(result, i))) answer.texts.push_back(std::move(*t));
        return answer;
    case answer_kind::nodata:
    case answer_kind::nxdomain: answer.what = txt_answer::kind::none; return answer;
    case answer_kind::bogus:
        answer.reason = fmt::format("DNSSEC-bogus TXT answer for {}: {}", name, outcome.detail);
        return answer;
    case answer_kind::failed:
    case answer_kind::timed_out:
        answer.reason = fmt::format("{} for {} TXT", outcome.kind == answer_kind::timed_out ? "timeout" : outcome.detail,
                                    name);
        return answer;
    }
    return answer;
}

/// "127.0.0.1:5302", "[::1]:5302", "127.0.0.1" or "::1" -> libunbound's "IP@port".
std::string forwarder_address(const std::string& text) {
    std::string host = text;
    std::string port;
    if (text.starts_with('[')) {
        const auto close = text.find(']');
        if (close == std::string::npos) throw std::runtime_error("[dns] resolver: missing ']' in " + text);
        host = text.substr(1, close - 1);
        if (close + 1 < text.size()) {
            if (text[close + 1] != ':') throw std::runtime_error("[dns] resolver: expected ':' after ']' in " + text);
            port = text.substr(close + 2);
        }
    } else if (std::count(text.begin(), text.end(), ':') == 1) {
        const auto colon = text.find(':');
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    boost::system::error_code ec;
    boost::asio::ip::make_address(host, ec);
    if (ec) throw std::runtime_error("[dns] resolver: not an IP address: " + text);
    if (port.empty()) return host;
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoul(port) == 0 || std::stoul(port) > 65535)
        throw std::runtime_error("[dns] resolver: bad port in " + text);
    return host + "@" + port;
}

void check(int rc, const std::string& what) {
    if (rc != 0) throw std::runtime_error(fmt::format("[dns] {}: {}", what, ub_strerror(rc)));
}

/// RFC 5321 §4.1.3 address literal as a recipient domain: "[192.0.2.1]", "[IPv6:2001:db8::1]".
std::optional<boost::asio::ip::address> address_literal(std::string_view domain) {
    if (domain.size() < 3 || domain.front() != '[' || domain.back() != ']') return std::nullopt;
    std::string inner(domain.substr(1, domain.size() - 2));
    boost::system::error_code ec;
    if (inner.size() > 5 && normalize_domain(inner.substr(0, 5)) == "ipv6:") {
        auto v6 = boost::asio::ip::make_address_v6(inner.substr(5), ec);
        if (ec) return std::nullopt;
        return boost::asio::ip::address(v6);
    }
    auto v4 = boost::asio::ip::make_address_v4(inner, ec);
    if (ec) return std::nullopt;
    return boost::asio::ip::address(v4);
}

host named_host(std::string name) {
    host h;
    h.name = std::move(name);
    return h;
}

/// A smart host given as an address ("192.0.2.1", "2001:db8::1", "[2001:db8::1]").
std::optional<boost::asio::ip::address> host_address(std::string_view name) {
    if (name.size() >= 2 && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);
    boost::system::error_code ec;
    auto address = boost::asio::ip::make_address(std::string(name), ec);
    if (ec) return std::nullopt;
    return address;
}

}  // namespace

struct resolver::impl {
    using clock = std::chrono::steady_clock;

    struct job;

    /// The callback argument of one libunbound query. Owned by its job; a cancelled
    /// query's callback is never called (ub_cancel), so the job frees it.
    struct query {
        impl* owner = nullptr;
        std::uint64_t job_id = 0;
        int rrtype = 0;
        std::size_t host_index = 0;
        int async_id = 0;
    };

    struct job {
        std::uint64_t id = 0;
        bool host_only = false;                 // resolve_host(): no MX round
        std::function<void(tlsa_answer)> done_tlsa;   // resolve_tlsa(): one TLSA query
        tlsa_answer tlsa;
        std::function<void(txt_answer)> done_txt;     // resolve_txt(): one TXT query
        txt_answer txt;
        std::string domain;
        std::vector<std::string> own_names;
        std::function<void(next_hops)> done_hops;
        std::function<void(host, std::string)> done_host;
        clock::time_point deadline;
        mx_plan plan;
        std::vector<host_answers> answers;      // one per plan.hosts entry
        std::vector<std::unique_ptr<query>> outstanding;
    };

    struct request {
        bool host_only = false;
        std::function<void(tlsa_answer)> done_tlsa;
        std::function<void(txt_answer)> done_txt;
        std::string name;
        std::vector<std::string> own_names;
        std::function<void(next_hops)> done_hops;
        std::function<void(host, std::string)> done_host;
    };

    impl(const config::dns_section& dns, resolver_options options) : options_(options) {
        ctx_ = ub_ctx_create();
        if (ctx_ == nullptr) throw std::runtime_error("[dns] cannot create a libunbound context");
        try {
            configure(dns);
            check(ub_ctx_async(ctx_, 1), "threaded resolving");
            if (::pipe2(wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0)
                throw std::runtime_error(fmt::format("[dns] pipe: {}", std::strerror(errno)));
            thread_ = std::thread([this] { run(); });
        } catch (...) {
            close_pipe();
            ub_ctx_delete(ctx_);
            throw;
        }
    }

    ~impl() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake();
        thread_.join();
        close_pipe();
        ub_ctx_delete(ctx_);
    }

    void submit(request r) {
        {
            std::lock_guard lock(mutex_);
            incoming_.push_back(std::move(r));
        }
        wake();
    }

private:
    void configure(const config::dns_section& dns) {
        if (!dns.unbound_config.empty()) {
            // Full control: forwarders, trust anchors and local zones all come from the
            // file, including `local-zone: "test." transparent` where that is wanted.
            const auto file = dns.unbound_config.string();
            check(ub_ctx_config(ctx_, file.c_str()), "unbound_config " + file);
            return;
        }
        if (!dns.resolver.empty()) {
            const auto address = forwarder_address(dns.resolver);
            check(ub_ctx_set_fwd(ctx_, address.c_str()), "resolver " + dns.resolver);
            // libunbound refuses to send queries to loopback addresses unless told.
            check(ub_ctx_set_option(ctx_, "do-not-query-localhost:", "no"), "do-not-query-localhost");
        } else {
            // Without a readable resolv.conf libunbound resolves from the root itself,
            // which is a working default rather than a configuration error.
            ub_ctx_resolvconf(ctx_, nullptr);
            ub_ctx_hosts(ctx_, nullptr);
            // No trust anchor here on purpose: the system's forwarder may strip DNSSEC
            // records, and validating through it would turn every answer bogus and defer
            // all mail. Without validation every answer is insecure, which fails safe (an
            // MX name never counts for domain validation). DNSSEC is switched on with
            // unbound_config, whose file names the trust anchor.
        }
        // RFC 6761 §6.2: libunbound answers "test." itself with NXDOMAIN by default;
        // test deployments route real mail under it, so let those queries through.
        check(ub_ctx_set_option(ctx_, "local-zone:", "test. transparent"), "local-zone test.");
    }

    void close_pipe() {
        for (int& fd : wake_pipe_) {
            if (fd >= 0) ::close(fd);
            fd = -1;
        }
    }

    void wake() {
        const char byte = 1;
        // A full pipe already guarantees a wake-up, so EAGAIN is fine.
        [[maybe_unused]] auto n = ::write(wake_pipe_[1], &byte, 1);
    }

    void drain_wake_pipe() {
        char buffer[64];
        while (::read(wake_pipe_[0], buffer, sizeof buffer) > 0) {
        }
    }

    void run() {
        pollfd fds[2]{};
        fds[0].fd = ub_fd(ctx_);
        fds[0].events = POLLIN;
        fds[1].fd = wake_pipe_[0];
        fds[1].events = POLLIN;
        while (true) {
            std::deque<request> batch;
            {
                std::lock_guard lock(mutex_);
                if (stopping_) break;
                batch.swap(incoming_);
            }
            for (auto& r : batch) begin(std::move(r));
            expire(clock::now());

            int timeout_ms = -1;
            if (!jobs_.empty()) {
                auto earliest = std::min_element(jobs_.begin(), jobs_.end(), [](const auto& x, const auto& y) {
                                    return x.second->deadline < y.second->deadline;
                                })->second->deadline;
                auto left = std::chrono::ceil<std::chrono::milliseconds>(earliest - clock::now()).count();
                timeout_ms = static_cast<int>(std::clamp<long long>(left, 0, 60'000));
            }
            // A failed poll (EINTR, or ENOMEM under memory pressure) is simply repeated:
            // leaving the loop would leave every later lookup unanswered.
            if (::poll(fds, 2, timeout_ms) < 0) continue;
            if (fds[1].revents & POLLIN) drain_wake_pipe();
            if (fds[0].revents & (POLLIN | POLLERR | POLLHUP)) ub_process(ctx_);
            expire(clock::now());
        }
        // Stopping: every lookup still open is answered, once, as deferred.
        while (!jobs_.empty()) {
            auto& j = *jobs_.begin()->second;
            cancel_outstanding(j);
            finish_with(j.id, deferred("resolver stopped before an answer for " + j.domain));
        }
        std::deque<request> unstarted;
        {
            std::lock_guard lock(mutex_);
            unstarted.swap(incoming_);
        }
        for (auto& r : unstarted) {
            const std::string reason = "resolver stopped before an answer for " + r.name;
            if (r.host_only)
                deliver_host(r.done_host, named_host(r.name), reason);
            else
                deliver_hops(r.done_hops, deferred(reason));
        }
    }

    static next_hops deferred(std::string reason) {
        next_hops hops;
        hops.status = lookup_status::defer;
        hops.reason = std::move(reason);
        return hops;
    }

    void begin(request r) {
        auto j = std::make_unique<job>();
        j->id = next_job_id_++;
        j->host_only = r.host_only;
        j->domain = normalize_domain(r.name);
        j->own_names = std::move(r.own_names);
        j->done_hops = std::move(r.done_hops);
        j->done_host = std::move(r.done_host);
        j->deadline = clock::now() + options_.timeout;
        if (r.done_tlsa) {
            j->done_tlsa = std::move(r.done_tlsa);
            j->tlsa.reason = fmt::format("timeout for {} TLSA", r.name);   // until it answers
            const std::uint64_t id = j->id;
            job& ref = *j;
            jobs_.emplace(id, std::move(j));
            start_query(ref, r.name, rr_type_tlsa, 0);
            settle(id);
            return;
        }
        if (r.done_txt) {
            j->done_txt = std::move(r.done_txt);
            j->txt.reason = fmt::format("timeout for {} TXT", r.name);   // until it answers
            const std::uint64_t id = j->id;
            job& ref = *j;
            jobs_.emplace(id, std::move(j));
            start_query(ref, r.name, rr_type_txt, 0);
            settle(id);
            return;
        }

        if (auto literal = r.host_only ? host_address(j->domain) : address_literal(j->domain)) {
            // An address needs no DNS: RFC 5321 §4.1.3 literals, smart hosts given by IP.
            host h;
            h.name = r.name;
            h.addresses.push_back(*literal);
            if (j->host_only) {
                deliver_host(j->done_host, std::move(h), {});
            } else {
                next_hops hops;
                hops.status = lookup_status::ok;
                hops.hosts.push_back(std::move(h));
                deliver_hops(j->done_hops, std::move(hops));
            }
            return;
        }

        const std::uint64_t id = j->id;
        job& ref = *j;
        jobs_.emplace(id, std::move(j));
        if (ref.host_only) {
            ref.plan.hosts.push_back({ref.domain, 0});
            start_address_round(ref);
        } else {
            start_query(ref, ref.domain, rr_type_mx, 0);
        }
        settle(id);
    }

    /// Sends one query; a query libunbound refuses to start is answered as failed at once.
    void start_query(job& j, const std::string& name, int rrtype, std::size_t host_index) {
        auto q = std::make_unique<query>();
        q->owner = this;
        q->job_id = j.id;
        q->rrtype = rrtype;
        q->host_index = host_index;
        const int rc = ub_resolve_async(ctx_, name.c_str(), rrtype, rr_class_in, q.get(), &impl::on_result, &q->async_id);
        if (rc == 0) {
            j.outstanding.push_back(std::move(q));
            return;
        }
        record(j, *q, rc, nullptr);
    }

    void start_address_round(job& j) {
        j.answers.assign(j.plan.hosts.size(), host_answers{});
        for (auto& a : j.answers) {
            // What never comes back before the deadline stays a timeout.
            a.a.outcome = {answer_kind::timed_out, dnssec::insecure, {}};
            a.aaaa.outcome = {answer_kind::timed_out, dnssec::insecure, {}};
        }
        for (std::size_t i = 0; i < j.plan.hosts.size(); ++i) {
            start_query(j, j.plan.hosts[i].name, rr_type_a, i);
            start_query(j, j.plan.hosts[i].name, rr_type_aaaa, i);
        }
    }

    static void on_result(void* arg, int err, ub_result* result) {
        auto* q = static_cast<query*>(arg);
        q->owner->handle_result(q, err, result);
        if (result != nullptr) ub_resolve_free(result);
    }

    void handle_result(query* q, int err, const ub_result* result) {
        auto found = jobs_.find(q->job_id);
        if (found == jobs_.end()) return;
        job& j = *found->second;
        auto it = std::find_if(j.outstanding.begin(), j.outstanding.end(),
                               [q](const auto& p) { return p.get() == q; });
        if (it == j.outstanding.end()) return;
        std::unique_ptr<query> owned = std::move(*it);
        j.outstanding.erase(it);
        record(j, *owned, err, result);
        settle(j.id);
    }

    void record(job& j, const query& q, int err, const ub_result* result) {
        if (q.rrtype == rr_type_tlsa) {
            j.tlsa = parse_tlsa(err, result, j.domain);
            return;
        }
        if (q.rrtype == rr_type_txt) {
            j.txt = parse_txt(err, result, j.domain);
            return;
        }
        if (q.rrtype == rr_type_mx) {
            j.plan = plan_from_mx(j.domain, parse_mx(err, result), j.own_names, tie_order_);
            if (!j.plan.decided) start_address_round(j);
            return;
        }
        auto& slot = j.answers.at(q.host_index);
        (q.rrtype == rr_type_a ? slot.a : slot.aaaa) = parse_addresses(err, result, q.rrtype);
    }

    /// Finishes a job whose queries are all answered.
    void settle(std::uint64_t id) {
        auto found = jobs_.find(id);
        if (found == jobs_.end() || !found->second->outstanding.empty()) return;
        job& j = *found->second;
        finish_with(id, hops_from_addresses(j.domain, j.plan, j.answers));
    }

    void cancel_outstanding(job& j) {
        for (auto& q : j.outstanding) ub_cancel(ctx_, q->async_id);
        j.outstanding.clear();
    }

    void expire(clock::time_point now) {
        std::vector<std::uint64_t> due;
        for (const auto& [id, j] : jobs_)
            if (j->deadline <= now) due.push_back(id);
        for (auto id : due) {
            job& j = *jobs_.at(id);
            const bool mx_pending =
                std::any_of(j.outstanding.begin(), j.outstanding.end(), [](const auto& q) { return q->rrtype == rr_type_mx; });
            cancel_outstanding(j);
            if (mx_pending) {
                mx_answer timed_out{{answer_kind::timed_out, dnssec::insecure, {}}, {}};
                j.plan = plan_from_mx(j.domain, timed_out, j.own_names, tie_order_);
            }
            // Address answers still open were preset to timed_out; hosts that did
            // answer in time remain usable.
            finish_with(id, hops_from_addresses(j.domain, j.plan, j.answers));
        }
    }

    void finish_with(std::uint64_t id, next_hops hops) {
        auto node = jobs_.extract(id);
        if (node.empty()) return;
        job& j = *node.mapped();
        if (j.done_tlsa) {
            try {
                j.done_tlsa(std::move(j.tlsa));
            } catch (...) {
            }
            return;
        }
        if (j.done_txt) {
            try {
                j.done_txt(std::move(j.txt));
            } catch (...) {
            }
            return;
        }
        if (j.host_only) {
            if (hops.status == lookup_status::ok && !hops.hosts.empty())
                deliver_host(j.done_host, std::move(hops.hosts.front()), {});
            else if (j.answers.empty())
                deliver_host(j.done_host, named_host(j.domain), hops.reason);
            else
                deliver_host(j.done_host, named_host(j.domain),
                             fmt::format("no address for {}: {}; {}", j.domain,
                                         describe_failure(j.answers[0].a.outcome, j.domain, "A"),
                                         describe_failure(j.answers[0].aaaa.outcome, j.domain, "AAAA")));
        } else {
            deliver_hops(j.done_hops, std::move(hops));
        }
    }

    // A throwing callback must not take the dispatcher thread (and every other lookup)
    // down with it; the caller's own code is responsible for reporting its errors.
    static void deliver_hops(const std::function<void(next_hops)>& done, next_hops hops) {
        if (!done) return;
        try {
            done(std::move(hops));
        } catch (...) {
        }
    }
    static void deliver_host(const std::function<void(host, std::string)>& done, host h, std::string error) {
        if (!done) return;
        try {
            done(std::move(h), std::move(error));
        } catch (...) {
        }
    }

    resolver_options options_;
    ub_ctx* ctx_ = nullptr;
    int wake_pipe_[2]{-1, -1};
    std::thread thread_;

    std::mutex mutex_;                  // guards incoming_ and stopping_
    std::deque<request> incoming_;
    bool stopping_ = false;

    // Dispatcher thread only.
    std::map<std::uint64_t, std::unique_ptr<job>> jobs_;
    std::uint64_t next_job_id_ = 1;
    std::mt19937 tie_order_{std::random_device{}()};
};

resolver::resolver(const config::dns_section& dns, resolver_options options)
    : impl_(std::make_unique<impl>(dns, options)) {}

resolver::~resolver() = default;

void resolver::resolve(const std::string& domain, const std::vector<std::string>& own_names,
                       std::function<void(next_hops)> done) {
    impl::request r;
    r.name = domain;
    r.own_names = own_names;
    r.done_hops = std::move(done);
    impl_->submit(std::move(r));
}

void resolver::resolve_tlsa(const std::string& host, std::uint16_t port, std::function<void(tlsa_answer)> done) {
    impl::request r;
    r.name = fmt::format("_{}._tcp.{}", port, host);
    r.done_tlsa = std::move(done);
    impl_->submit(std::move(r));
}

void resolver::resolve_txt(const std::string& name, std::function<void(txt_answer)> done) {
    impl::request r;
    r.name = name;
    r.done_txt = std::move(done);
    impl_->submit(std::move(r));
}

void resolver::resolve_host(const std::string& name, std::function<void(host, std::string error)> done) {
    impl::request r;
    r.host_only = true;
    r.name = name;
    r.done_host = std::move(done);
    impl_->submit(std::move(r));
}

}  // namespace postern::route
