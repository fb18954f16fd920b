import Logging

public struct LogConfig: Sendable, Equatable {
    public var level: Logger.Level

    public init(level: Logger.Level = .info) {
        self.level = level
    }
}

extension Logger.Level {
    /// The names accepted in `log.level`, most verbose first.
    public static let configNames: [String] = Logger.Level.allCases.map(\.configName)

    /// Parses `trace`, `debug`, `info`, `notice`, `warning`, `error` or `critical` (exact, lower case).
    public init?(configName: String) {
        guard let level = Logger.Level.allCases.first(where: { $0.configName == configName }) else { return nil }
        self = level
    }

    /// The name used in the config file and in log lines.
    public var configName: String {
        switch self {
        case .trace: return "trace"
        case .debug: return "debug"
        case .info: return "info"
        case .notice: return "notice"
        case .warning: return "warning"
        case .error: return "error"
        case .critical: return "critical"
        }
    }
}
