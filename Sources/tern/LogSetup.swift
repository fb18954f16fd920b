import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's log handler: swift-log's standard-error stream handler, and, when running under
/// systemd (JOURNAL_STREAM is set), the same lines prefixed with the sd-daemon(3) `<N>` priority
/// so the journal records each line's level.
///
/// Use: `LoggingSystem.bootstrap { makeLogHandler(label: $0, level: config.log.level) }`.
func makeLogHandler(label: String, level: Logger.Level) -> LogHandler {
    if getenv("JOURNAL_STREAM") != nil {
        var handler = JournalPriorityLogHandler(label: label)
        handler.logLevel = level
        return handler
    }
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = level
    return handler
}

/// Bootstraps swift-log once for the whole process.
func bootstrapLogging(level: Logger.Level) {
    LoggingSystem.bootstrap { label in makeLogHandler(label: label, level: level) }
}

/// `<6>2026-05-01T12:00:00+0000 info tern : key=value [tern] message` on standard error.
/// Formats through StreamLogHandler, so lines look exactly like the non-systemd ones after the prefix.
struct JournalPriorityLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider

    init(label: String) { self.label = label }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var inner = StreamLogHandler(label: label, stream: PrefixedStandardError(prefix: Self.prefix(event.level)),
                                     metadataProvider: metadataProvider)
        inner.logLevel = logLevel
        inner.metadata = metadata
        inner.log(event: event)
    }

    /// sd-daemon(3) priorities: <7> debug, <6> info, <5> notice, <4> warning, <3> err, <2> crit.
    static func prefix(_ level: Logger.Level) -> String {
        switch level {
        case .trace, .debug: return "<7>"
        case .info: return "<6>"
        case .notice: return "<5>"
        case .warning: return "<4>"
        case .error: return "<3>"
        case .critical: return "<2>"
        }
    }
}

/// Writes `prefix + line` to standard error in one locked call, so lines from different threads
/// never interleave.
struct PrefixedStandardError: TextOutputStream, Sendable {
    let prefix: String

    mutating func write(_ string: String) {
        let line = prefix + string
        flockfile(stderr)
        fputs(line, stderr)
        fflush(stderr)
        funlockfile(stderr)
    }
}
