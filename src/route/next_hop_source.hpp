// route/next_hop_source.hpp: the DNS questions that delivery and policy ask, behind an
// interface (route::resolver answers them through libunbound; tests give a fake), and each
// of them as an awaitable for coroutines.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "route/resolver.hpp"

namespace postern::route {

class next_hop_source {
public:
    virtual ~next_hop_source() = default;
    /// As route::resolver::resolve: `done` once, from any thread.
    virtual void resolve(const std::string& domain, const std::vector<std::string>& own_names,
                         std::function<void(next_hops)> done) = 0;
    /// As route::resolver::resolve_host.
    virtual void resolve_host(const std::string& name, std::function<void(host, std::string)> done) = 0;
    /// As route::resolver::resolve_tlsa. The default: no TLSA records (a source without DNSSEC).
    virtual void resolve_tlsa(const std::string& host_name, std::uint16_t port, std::function<void(tlsa_answer)> done) {
        (void)host_name;
        (void)port;
        tlsa_answer none;
        none.what = tlsa_answer::kind::none;
        done(std::move(none));
    }
    /// As route::resolver::resolve_txt. The default: no records.
    virtual void resolve_txt(const std::string& name, std::function<void(txt_answer)> done) {
        (void)name;
        txt_answer none;
        none.what = txt_answer::kind::none;
        done(std::move(none));
    }
};

/// `r` as a next_hop_source; `r` must outlive it.
std::unique_ptr<next_hop_source> as_next_hop_source(resolver& r);

namespace detail {
/// Runs `start(callback)` when awaited and resumes the awaiting coroutine on its own
/// executor with the value the callback was given (the callback may run on any thread).
/// `start` waits on the heap: GCC 12 moves the initiation of a use_awaitable operation
/// into a coroutine frame as raw bytes, which breaks an object that points into itself
/// (a short std::string), so the initiation holds nothing but a shared pointer.
template <typename Answer, typename Start>
boost::asio::awaitable<Answer> await_callback(Start start) {
    namespace asio = boost::asio;
    auto initiation = [](auto handler, std::shared_ptr<Start> begin) {
        auto executor = asio::get_associated_executor(handler);
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        (*begin)([shared, executor](Answer a) {
            asio::post(executor, [shared, a = std::move(a)]() mutable { (*shared)(std::move(a)); });
        });
    };
    return asio::async_initiate<decltype(asio::use_awaitable), void(Answer)>(
        initiation, asio::use_awaitable, std::make_shared<Start>(std::move(start)));
}
}  // namespace detail

inline boost::asio::awaitable<next_hops> resolve_async(next_hop_source& dns, std::string domain,
                                                       std::vector<std::string> own_names) {
    return detail::await_callback<next_hops>([&dns, domain = std::move(domain), own = std::move(own_names)](auto done) {
        dns.resolve(domain, own, std::move(done));
    });
}

/// The host's addresses, or an error text.
inline boost::asio::awaitable<std::pair<host, std::string>> resolve_host_async(next_hop_source& dns, std::string name) {
    return detail::await_callback<std::pair<host, std::string>>([&dns, name = std::move(name)](auto done) {
        dns.resolve_host(name, [done = std::move(done)](host h, std::string error) mutable {
            done(std::make_pair(std::move(h), std::move(error)));
        });
    });
}

inline boost::asio::awaitable<tlsa_answer> resolve_tlsa_async(next_hop_source& dns, std::string host_name,
                                                              std::uint16_t port) {
    return detail::await_callback<tlsa_answer>([&dns, host_name = std::move(host_name), port](auto done) {
        dns.resolve_tlsa(host_name, port, std::move(done));
    });
}

inline boost::asio::awaitable<txt_answer> resolve_txt_async(next_hop_source& dns, std::string name) {
    return detail::await_callback<txt_answer>([&dns, name = std::move(name)](auto done) {
        dns.resolve_txt(name, std::move(done));
    });
}

}  // namespace postern::route
