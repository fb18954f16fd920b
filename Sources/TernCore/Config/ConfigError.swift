/// A configuration problem, located by file and key path.
///
/// `path` is the full key path of the offending value, e.g. `listeners[1].port` or `relay.portRange`;
/// it is empty when the problem concerns the whole file (unreadable, not JSON, not an object).
/// `description` is the one line printed by `tern check-config` and at start-up:
/// `config.json: listeners[0].port: expected an integer 0...65535, found string "x"`.
public struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    public var path: String
    public var message: String
    public var source: String

    public init(path: String, message: String, source: String) {
        self.path = path
        self.message = message
        self.source = source
    }

    public var description: String {
        path.isEmpty ? "\(source): \(message)" : "\(source): \(path): \(message)"
    }
}
