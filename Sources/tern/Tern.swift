import ArgumentParser

@main
struct Tern: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tern",
        abstract: "A STUN/TURN relay and NAT traversal daemon.",
        version: "0.1.0",
        subcommands: [Serve.self, CheckConfig.self, Credentials.self],
        defaultSubcommand: Serve.self
    )
}
