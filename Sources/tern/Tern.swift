import ArgumentParser
import TernCore

@main
struct Tern: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tern",
        abstract: "A STUN/TURN relay and NAT traversal daemon.",
        version: ternVersion,
        subcommands: [Serve.self, CheckConfig.self, Credentials.self, Probe.self],
        defaultSubcommand: Serve.self
    )
}
