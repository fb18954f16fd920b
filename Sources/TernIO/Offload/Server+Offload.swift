import Logging
import TernCore

extension Server {
    /// `io.offload: "tc"`: loads and attaches the classifier and gives every worker its control
    /// plane. Where the kernel or the capabilities refuse, the reason is logged and kept for `/stats`,
    /// and Tern relays in user space: it never fails to start because of it.
    func startOffload() {
        guard io.offload == .tc else { return }
        switch KernelOffload.start(interfaces: io.offloadInterfaces) {
        case .active(let kernel):
            state.withLock { $0.offload = kernel }
            for w in workers { w.queue.sync { w.handler.fastPath = OffloadFastPath(kernel: kernel) } }
            logger.info("io.offload: UDP/IPv4 ChannelData is relayed in the kernel",
                        metadata: ["attachment": "\(kernel.attachment)", "interfaces": "\(kernel.interfaces.joined(separator: ","))"])
        case .unavailable(let reason):
            state.withLock { $0.offloadUnavailable = reason }
            logger.warning("io.offload: \"tc\" is unavailable; relaying in user space",
                           metadata: ["reason": "\(reason)"])
        }
    }

    /// After the workers have ended every allocation (and so deleted every entry): detaches and
    /// unloads the program.
    func stopOffload() {
        for w in workers { w.queue.sync { w.handler.fastPath = nil } }
        state.withLock { $0.offload }?.unload()
    }

    /// The kernel fast path, if it is active.
    public var kernelOffload: KernelOffload? { state.current.offload }

    /// `/stats`' `offload` section (the per-worker entry counts are added by `snapshot()`).
    func offloadFigures() -> OffloadFigures {
        var f = OffloadFigures()
        f.mode = io.offload.rawValue
        let (kernel, reason) = state.withLock { ($0.offload, $0.offloadUnavailable) }
        f.unavailableReason = reason
        if let kernel {
            f.active = true
            f.attachment = kernel.attachment
            f.interfaces = kernel.interfaces
            f.kernel = kernel.counters()
        }
        return f
    }
}
