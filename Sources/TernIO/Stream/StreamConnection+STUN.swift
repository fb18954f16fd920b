import STUN
import TernCore

/// The `.stun` role: STUN messages and ChannelData framed off the stream and answered by the handler.
extension StreamConnection {
    func processFrames(_ framer: StreamFramer) {
        var start = 0
        while !closed {
            let available = input.count - start
            let length: Int
            switch input.withBytes(start..<input.count, { framer.next($0) }) {
            case .needMore:
                length = -1
            case .frame(let n):
                length = n
            case .invalid:
                worker.stats.tcpClosedMalformed &+= 1
                close(reason: .malformed)
                return
            }
            guard length > 0, length <= available else {
                if length > StreamConnection.maxFrame {
                    worker.stats.tcpClosedMalformed &+= 1
                    close(reason: .malformed)
                    return
                }
                break
            }
            var context = PacketContext(client: client, local: local, transport: transport, connection: id)
            context.streamInUse = carriedOtherMessage
            let isConnectionBind = input.withBytes(start..<(start + 2)) { $0[0] == 0x00 && $0[1] == 0x0B }
            let result = input.withBytes(start..<(start + length)) {
                worker.handler.handle($0, context: context, response: worker.streamResponse)
            }
            start &+= length
            lastActivity = worker.handler.now
            if !isConnectionBind { carriedOtherMessage = true }
            // The first allocation on this connection takes it out of the unallocated count.
            if unallocated, worker.handler.allocations.allocation(for: FiveTuple(client: client, server: local, transport: transport)) != nil {
                worker.endUnallocated(&unallocated)
            }
            switch result {
            case .reply(let n), .replyFrom(let n, _, _):  // RFC 5780 redirection is UDP only
                send(UnsafeRawBufferPointer(rebasing: worker.streamResponse[0..<n]))
            case .noReply:
                break
            case .malformed:
                worker.stats.tcpClosedMalformed &+= 1
                close(reason: .malformed)
                return
            case .bindDataConnection(let n, let id, let owner):
                // RFC 6062 section 5.4: the success response, then raw bytes from here on.
                let reply = Array(UnsafeRawBufferPointer(rebasing: worker.streamResponse[0..<n]))
                let leftover = input.withBytes(start..<input.count) { Array($0) }
                input.count = 0  // everything up to here was STUN; the leftover is handed over separately
                worker.bindDataConnection(self, connectionID: id, owner: owner, reply: reply, leftover: leftover)
                return
            }
        }
        // Keep the unframed tail at the front of the buffer.
        input.consume(start)
    }
}
