// daemon/preflight.hpp: what a configuration needs from the machine, checked before use.
//
// config/ validates the file on its own. The preflight adds what only the running server
// would otherwise discover: the service user exists; wherever anything uses the key ring
// (a TLS receive connector, a client_certificate, trusted_roots, certificate or domain
// validation without the system store) the key ring opens with its stash and every label
// resolves to an entry of the right kind; the TLS contexts build as serve builds them.
// Warnings: a serving certificate whose names miss [server] hostname, certificates that
// expire within 30 days, accepted domains no send connector covers, verification that
// has no root to verify with.
//
// `serve` runs it at start and at reload, and `config check` runs the same function, so
// a check that says valid is a start that succeeds.
#pragma once

#include "config/schema.hpp"

namespace postern::daemon {

/// Adds the preflight's errors and warnings to `loaded` (each naming file, line and key;
/// keys inside a connector name it). Does nothing when the file itself did not load.
/// When it adds an error, `loaded.config` is emptied, as config::load_file does.
void preflight(config::load_result& loaded);

}  // namespace postern::daemon
