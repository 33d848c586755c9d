// delivery/protocol_terms.hpp: delivery drives the protocol's client (smtp/client_fsm.hpp)
// and speaks its vocabulary; these names are used unqualified throughout the room.
#pragma once

#include "smtp/client_fsm.hpp"
#include "smtp/outcome.hpp"

namespace postern::delivery {

using smtp::capabilities;
using smtp::client_action;
using smtp::client_event;
using smtp::client_fsm;
using smtp::client_settings;
using smtp::recipient_result;
using smtp::session_failure;
using smtp::transaction;
using smtp::transcript_line;
using smtp::verdict;
using smtp::wait_stage;

}  // namespace postern::delivery
