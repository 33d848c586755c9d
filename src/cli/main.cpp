// cli/main.cpp: the `postern` command line (DESIGN.md §4).
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "admin/commands.hpp"
#include "daemon/commands.hpp"
#include "lab/commands.hpp"

int main(int argc, char** argv) {
    CLI::App app{"Postern: a mail transfer agent with enforced, verified TLS", "postern"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "postern " POSTERN_VERSION);

    int exit_code = 0;
    postern::daemon::add_serve_command(app, exit_code);
    postern::admin::add_config_command(app, exit_code);
    postern::admin::add_keyring_command(app, exit_code);
    postern::admin::add_ca_command(app, exit_code);
    postern::admin::add_control_commands(app, exit_code);
    postern::admin::add_policy_command(app, exit_code);
    postern::admin::add_queue_command(app, exit_code);
    postern::lab::add_send_command(app, exit_code);
    postern::lab::add_probe_command(app, exit_code);
    postern::lab::add_demo_command(app, exit_code);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return 2;                      // bad usage
    } catch (const std::exception& e) {
        std::fprintf(stderr, "postern: %s\n", e.what());
        return 1;
    }
    return exit_code;
}
