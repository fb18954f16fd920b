import ArgumentParser
import TernCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `tern check-config FILE`: parse and validate a config file without starting anything.
struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a JSON config file and print its listeners.",
        discussion: "Prints 'FILE: OK' and the listeners on success; prints the first problem, with its key path, to standard error and exits with status 1 otherwise."
    )

    @Argument(help: "Path to the JSON config file.")
    var file: String

    func run() throws {
        do {
            let config = try ConfigFile.load(path: file)
            print("\(file): OK")
            print("listeners: \(config.summary())")
            if let warning = ConfigFile.permissionWarning(path: file, config: config) {
                fputs("warning: \(warning)\n", stderr)
            }
        } catch {
            fputs("\(error)\n", stderr)
            throw ExitCode(1)
        }
    }
}
