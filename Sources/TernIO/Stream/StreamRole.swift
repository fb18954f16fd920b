#if canImport(Glibc)
import Glibc
#endif
import STUN
import TernCore

/// What a stream connection's bytes are.
enum StreamRole {
    /// STUN messages and ChannelData, framed by `StreamFramer` and answered by the handler.
    case stun(StreamFramer)
    /// RFC 6062: a raw byte pipe. A peer connection of a TCP allocation from the start, or a client
    /// data connection after its ConnectionBind; the other end is nil until ConnectionBind joins them.
    case pipe(StreamConnection?)

    var isPipe: Bool {
        if case .pipe = self { return true }
        return false
    }

    /// The other end of a joined pipe.
    var peer: StreamConnection? {
        if case .pipe(let p) = self { return p }
        return nil
    }
}

/// Frames STUN over a stream: a message is framed by its own length field (RFC 8489 section 6.2.2);
/// ChannelData on a stream is padded to a multiple of 4 (RFC 8656 section 12.5). Channel numbers of
/// RFC 5766's wider range frame too; the handler decides what it accepts.
struct StreamFramer {
    enum Frame {
        case needMore
        /// A frame of this many bytes starts here (it may not all have arrived yet).
        case frame(Int)
        case invalid
    }

    /// The next frame at the start of `bytes`.
    func next(_ bytes: UnsafeRawBufferPointer) -> Frame {
        switch StreamFrame.frameLength(bytes, channels: ChannelData.rfc5766Channels) {
        case .needMore: return .needMore
        case .stun(let n), .channelData(let n): return .frame(n)
        case .invalid: return .invalid
        }
    }
}

/// Received bytes not yet framed (or, in a pipe, not yet forwarded), at the front of a buffer that
/// grows only as far as the largest legal frame plus one read.
struct InputBuffer {
    private(set) var bytes: [UInt8]
    var count = 0

    init(capacity: Int) {
        bytes = [UInt8](repeating: 0, count: capacity)
    }

    var capacity: Int { bytes.count }
    var isFull: Bool { count == bytes.count }
    var isEmpty: Bool { count == 0 }

    /// Makes room for `n` more bytes.
    mutating func reserve(_ n: Int) {
        if bytes.count - count < n {
            bytes.append(contentsOf: repeatElement(0, count: n - (bytes.count - count)))
        }
    }

    mutating func append(_ more: UnsafeRawBufferPointer) {
        guard more.count > 0 else { return }
        reserve(more.count)
        let start = count
        bytes.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[start..<(start + more.count)]).copyMemory(from: more) }
        count += more.count
    }

    /// Runs `body` with the free space after the buffered bytes.
    mutating func withFreeSpace<R>(_ body: (UnsafeMutableRawBufferPointer) -> R) -> R {
        let start = count
        return bytes.withUnsafeMutableBytes { body(UnsafeMutableRawBufferPointer(rebasing: $0[start...])) }
    }

    func withBytes<R>(_ range: Range<Int>, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        bytes.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[range])) }
    }

    /// Drops the first `n` bytes, keeping the rest at the front.
    mutating func consume(_ n: Int) {
        guard n > 0 else { return }
        let remaining = count - n
        if remaining > 0 {
            bytes.withUnsafeMutableBytes { buf in
                guard let base = buf.baseAddress else { return }
                memmove(base, base + n, remaining)
            }
        }
        count = remaining
    }
}
