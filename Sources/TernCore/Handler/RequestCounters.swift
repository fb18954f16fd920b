import STUN

/// Requests answered, by method and result, as a fixed table of plain integers (no hashing, no
/// allocation per request). The result is read back from the response just written: its class, and
/// for error responses the ERROR-CODE, which this server always writes as the first attribute.
public struct RequestCounters: Sendable, Equatable {
    /// Row labels, in the order of `row(_:)`: methods with their own row, then "other".
    public static let methodLabels = ["binding", "allocate", "refresh", "create_permission", "channel_bind",
                                      "connect", "connection_bind", "other"]
    /// Error codes this server sends (RFC 8489 section 14.8, RFC 8656 section 19, RFC 6062 section 6.3).
    public static let codes: [Int] = [300, 400, 401, 403, 420, 437, 438, 440, 441, 442, 443, 446, 447, 486, 500, 508]
    /// Result columns: "success", each code, then "other".
    public static let resultLabels = ["success"] + codes.map(String.init) + ["other"]

    private var table = [UInt64](repeating: 0, count: methodLabels.count * resultLabels.count)

    public init() {}

    @inline(__always)
    static func row(_ m: Method) -> Int {
        switch m {
        case .binding: 0
        case .allocate: 1
        case .refresh: 2
        case .createPermission: 3
        case .channelBind: 4
        case .connect: 5
        case .connectionBind: 6
        default: 7
        }
    }

    @inline(__always)
    static func column(code: Int) -> Int {
        switch code {
        case 300: 1
        case 400: 2
        case 401: 3
        case 403: 4
        case 420: 5
        case 437: 6
        case 438: 7
        case 440: 8
        case 441: 9
        case 442: 10
        case 443: 11
        case 446: 12
        case 447: 13
        case 486: 14
        case 500: 15
        case 508: 16
        default: 17
        }
    }

    /// Counts the response of `count` bytes at the start of `response` (written by the handler).
    @inline(__always)
    mutating func record(method: Method, response: UnsafeMutableRawBufferPointer, count: Int) {
        let r = Self.row(method)
        var column = 0
        // Byte 0-1: type; class bits C1 (0x0100) and C0 (0x0010). Error response = C1 and C0.
        if count >= 28, response[0] & 0x01 != 0, response[1] & 0x10 != 0 {
            // First attribute at 20: type 0x0009 ERROR-CODE, then class at 26 and number at 27.
            if response[20] == 0x00 && response[21] == 0x09 {
                column = Self.column(code: Int(response[26] & 0x07) * 100 + Int(response[27]))
            } else {
                column = Self.resultLabels.count - 1
            }
        }
        table[r * Self.resultLabels.count + column] &+= 1
    }

    /// Requests of `method` (a label from `methodLabels`) with `result` (from `resultLabels`).
    public func count(methodIndex: Int, resultIndex: Int) -> UInt64 {
        table[methodIndex * Self.resultLabels.count + resultIndex]
    }

    public static func + (a: Self, b: Self) -> Self {
        var s = a
        for i in s.table.indices { s.table[i] &+= b.table[i] }
        return s
    }
}
