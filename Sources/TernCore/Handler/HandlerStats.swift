/// Per-worker counters of the request handler. Plain integers: each worker owns its handler and
/// touches them only on its own queue; readers sum a snapshot taken on that queue.
public struct HandlerStats: Sendable, Equatable {
    public var bindingRequests: UInt64 = 0
    public var bindingSuccesses: UInt64 = 0
    /// 420 Unknown Attribute answers (RFC 8489 section 6.3.1.1).
    public var unknownAttributeErrors: UInt64 = 0
    /// 400 answers to requests for methods this server does not implement.
    public var unsupportedMethodErrors: UInt64 = 0
    /// Bytes that are not a well-formed STUN message (RFC 8489 section 6.3): dropped or connection closed.
    public var malformed: UInt64 = 0
    /// Messages whose FINGERPRINT did not verify (RFC 8489 section 14.7): dropped.
    public var badFingerprint: UInt64 = 0
    /// ChannelData for a channel no allocation has bound (RFC 8656 section 12.4): dropped.
    public var unboundChannelData: UInt64 = 0
    /// Indications and responses that need no answer.
    public var ignored: UInt64 = 0
    /// Requests whose response did not fit the buffer (never expected; counted rather than trapped).
    public var encodeFailures: UInt64 = 0
    /// Binding requests dropped without an answer: their source was past `limits.bindingRatePerIP`.
    public var droppedBindingRate: UInt64 = 0

    public init() {}

    public static func + (a: HandlerStats, b: HandlerStats) -> HandlerStats {
        var s = HandlerStats()
        s.bindingRequests = a.bindingRequests &+ b.bindingRequests
        s.bindingSuccesses = a.bindingSuccesses &+ b.bindingSuccesses
        s.unknownAttributeErrors = a.unknownAttributeErrors &+ b.unknownAttributeErrors
        s.unsupportedMethodErrors = a.unsupportedMethodErrors &+ b.unsupportedMethodErrors
        s.malformed = a.malformed &+ b.malformed
        s.badFingerprint = a.badFingerprint &+ b.badFingerprint
        s.unboundChannelData = a.unboundChannelData &+ b.unboundChannelData
        s.ignored = a.ignored &+ b.ignored
        s.encodeFailures = a.encodeFailures &+ b.encodeFailures
        s.droppedBindingRate = a.droppedBindingRate &+ b.droppedBindingRate
        return s
    }
}
