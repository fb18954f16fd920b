#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CTernShims

/// Reading and sending: stream reads and writes, single datagrams, recvmmsg/sendmmsg batches and UDP GSO.
extension Posix {
    /// read(2) into `buffer`; `.done(0)` is end of stream.
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOOutcome<Int> {
        try retrying("read") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// recv(2) with MSG_PEEK: what `read` would return, left in the socket.
    public static func peek(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOOutcome<Int> {
        try retrying("recv") { Glibc.recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_PEEK)) }
    }

    /// send(2) with MSG_NOSIGNAL, so a peer that went away yields EPIPE instead of SIGPIPE.
    public static func send(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws(SystemError) -> IOOutcome<Int> {
        try retrying("send") { Glibc.send(fd, buffer.baseAddress, buffer.count, tern_msg_nosignal()) }
    }

    public static func recvmmsg(_ fd: Int32, _ msgs: UnsafeMutablePointer<tern_mmsghdr>, count: Int) throws(SystemError) -> IOOutcome<Int> {
        let r = try retrying("recvmmsg") { tern_recvmmsg(fd, msgs, UInt32(count), 0) }
        switch r {
        case .done(let n): return .done(Int(n))
        case .wouldBlock: return .wouldBlock
        }
    }

    public static func sendmmsg(_ fd: Int32, _ msgs: UnsafeMutablePointer<tern_mmsghdr>, count: Int) throws(SystemError) -> IOOutcome<Int> {
        let r = try retrying("sendmmsg") { tern_sendmmsg(fd, msgs, UInt32(count), tern_msg_nosignal()) }
        switch r {
        case .done(let n): return .done(Int(n))
        case .wouldBlock: return .wouldBlock
        }
    }

    /// UDP GSO (UDP_SEGMENT): `count` buffers, each `segment` bytes except a shorter last one, as one
    /// sendmsg that the kernel splits into datagrams to `to`. `.done(bytes)`; EIO, EINVAL, ENOPROTOOPT
    /// or EOPNOTSUPP are thrown where the kernel or the device cannot segment.
    static func sendSegmented(_ fd: Int32, _ iov: UnsafePointer<iovec>, count: Int, to: UnsafePointer<sockaddr>,
                              length: socklen_t, segment: UInt16) throws(SystemError) -> IOOutcome<Int> {
        try retrying("sendmsg(UDP_SEGMENT)") { tern_send_gso(fd, iov, Int32(count), to, length, segment) }
            .map { Int($0) }
    }

    /// sendto(2) of one datagram; false when it was not sent (buffer full, unreachable, refused).
    @inline(__always)
    public static func sendto(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, to address: UnsafePointer<sockaddr>,
                              length: socklen_t) -> Bool {
        while true {
            let r = Glibc.sendto(fd, bytes.baseAddress, bytes.count, tern_msg_nosignal(), address, length)
            if r >= 0 { return true }
            if Glibc.errno == EINTR { continue }
            return false
        }
    }
}

extension IOOutcome {
    @inline(__always)
    func map<U>(_ transform: (T) -> U) -> IOOutcome<U> {
        switch self {
        case .done(let v): return .done(transform(v))
        case .wouldBlock: return .wouldBlock
        }
    }
}
