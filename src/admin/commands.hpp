// admin/commands.hpp: the commands an administrator runs against a configuration, its
// key ring and CA files, its queue, and a running server (DESIGN.md §4; exit status as
// in daemon/commands.hpp).
#pragma once

#include <CLI/CLI.hpp>

namespace postern::admin {

void add_config_command(CLI::App& app, int& exit_code);    // admin/config_command.cpp
void add_keyring_command(CLI::App& app, int& exit_code);   // admin/keyring_command.cpp
void add_ca_command(CLI::App& app, int& exit_code);        // admin/ca_command.cpp
void add_control_commands(CLI::App& app, int& exit_code);  // admin/control_command.cpp: reload, stop
void add_queue_command(CLI::App& app, int& exit_code);     // admin/queue_command.cpp
void add_policy_command(CLI::App& app, int& exit_code);    // admin/policy_command.cpp: the downgrade memory

}  // namespace postern::admin
