// config/address_lookup.hpp: what answers for an [[ldap_source]] while the server runs.
//
// The configuration names a directory; the directory room (directory/ldap_directory)
// implements this and is attached to each ldap_source after loading (daemon), so the
// rooms that check and route recipients (net, route, delivery) ask it without depending
// on LDAP. Copies of a configuration share one lookup, as they share recipient lists.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace postern::config {

enum class lookup_verdict { found, not_found, unavailable };

struct lookup_answer {
    lookup_verdict verdict = lookup_verdict::unavailable;
    /// Taken from the cache past its TTL because the directory cannot answer (max_stale).
    bool stale = false;
    /// For the logs: why the directory could not answer, or how old a stale answer is.
    std::string detail;
};

class address_lookup {
public:
    virtual ~address_lookup() = default;
    /// The answer at hand without waiting: a fresh cached one, or a stale one while the
    /// directory is down. Empty: it must be asked; a fetch has been started, so a later
    /// call may have the answer.
    virtual std::optional<lookup_answer> answer_at_hand(std::string_view address) = 0;
    /// Asks, the cache first: `done` runs on this thread when the cache answers, else on
    /// a thread of the directory's own.
    virtual void ask(std::string address, std::function<void(lookup_answer)> done) = 0;
    /// Asks and waits (commands: `postern route`, `config check`).
    virtual lookup_answer ask_and_wait(std::string_view address) = 0;
};

}  // namespace postern::config
