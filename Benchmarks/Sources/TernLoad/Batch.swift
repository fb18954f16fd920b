#if canImport(Glibc)
import Glibc
#endif
import CTernShims

/// `count` datagram slots for recvmmsg, each with room for its sender's address and the kernel's
/// receive timestamp (SO_TIMESTAMPNS), and for sending the same datagrams back to their senders in
/// one sendmmsg (the two-way load's echoing peer).
final class MessageBatch {
    let count: Int
    let slot: Int
    let messages: UnsafeMutablePointer<tern_mmsghdr>
    private let iovecs: UnsafeMutablePointer<iovec>
    private let buffers: UnsafeMutableRawPointer
    private let control: UnsafeMutableRawPointer
    private let names: UnsafeMutablePointer<sockaddr_in>
    private static let controlSize = 64

    init(count: Int = 64, slot: Int = 2048) {
        self.count = count
        self.slot = slot
        messages = .allocate(capacity: count)
        iovecs = .allocate(capacity: count)
        buffers = .allocate(byteCount: count * slot, alignment: 16)
        control = .allocate(byteCount: count * Self.controlSize, alignment: 16)
        names = .allocate(capacity: count)
        for i in 0..<count {
            iovecs[i] = iovec(iov_base: buffers + i * slot, iov_len: slot)
            messages[i] = tern_mmsghdr()
            messages[i].msg_hdr.msg_iov = iovecs + i
            messages[i].msg_hdr.msg_iovlen = 1
        }
    }

    deinit {
        messages.deallocate(); iovecs.deallocate(); buffers.deallocate(); control.deallocate(); names.deallocate()
    }

    @inline(__always) func buffer(_ i: Int) -> UnsafeMutableRawPointer { buffers + i * slot }
    @inline(__always) func length(_ i: Int) -> Int { Int(messages[i].msg_len) }

    /// recvmmsg into every slot (flags: MSG_DONTWAIT 0x40, MSG_WAITFORONE 0x10000); the count received.
    func receive(_ fd: Int32, flags: Int32, timestamps: Bool) -> Int {
        for i in 0..<count {
            iovecs[i].iov_len = slot
            messages[i].msg_hdr.msg_name = UnsafeMutableRawPointer(names + i)
            messages[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
            messages[i].msg_hdr.msg_control = timestamps ? control + i * Self.controlSize : nil
            messages[i].msg_hdr.msg_controllen = timestamps ? Self.controlSize : 0
        }
        return max(0, Int(tern_recvmmsg(fd, messages, UInt32(count), flags)))
    }

    /// SCM_TIMESTAMPNS of datagram i in ns, CLOCK_REALTIME (cmsghdr: 8-byte length, level, type; then a timespec).
    @inline(__always) func kernelTime(_ i: Int) -> UInt64? {
        let c = control + i * Self.controlSize
        guard messages[i].msg_hdr.msg_controllen >= 32, c.load(fromByteOffset: 8, as: Int32.self) == SOL_SOCKET,
              c.load(fromByteOffset: 12, as: Int32.self) == 35 else { return nil }
        return UInt64(c.load(fromByteOffset: 16, as: Int.self)) &* 1_000_000_000 &+ UInt64(c.load(fromByteOffset: 24, as: Int.self))
    }

    /// Sends the first `n` received datagrams (as they now are) back to their senders from `fd`, in
    /// one sendmmsg (a short count, i.e. a full send buffer, retries the rest a few times). Returns
    /// how many the kernel took.
    func echo(_ fd: Int32, _ n: Int) -> Int {
        for i in 0..<n {
            iovecs[i].iov_len = Int(messages[i].msg_len)
            messages[i].msg_hdr.msg_control = nil
            messages[i].msg_hdr.msg_controllen = 0
        }
        var done = 0
        for _ in 0..<4 where done < n {
            let r = tern_sendmmsg(fd, messages + done, UInt32(n - done), 0)
            if r <= 0 { break }
            done += Int(r)
        }
        return done
    }
}

/// Turns on SO_TIMESTAMPNS (35): an SCM_TIMESTAMPNS control message with every datagram received.
func enableKernelTimestamps(_ fd: Int32) {
    var on: Int32 = 1
    precondition(setsockopt(fd, SOL_SOCKET, 35, &on, 4) == 0, "SO_TIMESTAMPNS: \(errno)")
}
