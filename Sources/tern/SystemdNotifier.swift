import CSystemd
import TernIO
import Dispatch
import Foundation

/// systemd's notification protocol through libsystemd's sd_notify(3): READY=1 once every listener
/// is bound, STATUS= with a one-line summary, RELOADING=1/READY=1 around a reload, STOPPING=1 on
/// shutdown, and WATCHDOG=1 at half of WATCHDOG_USEC when the unit has WatchdogSec=. Without
/// NOTIFY_SOCKET (not under systemd) every call does nothing.
final class SystemdNotifier: @unchecked Sendable {
    private var watchdog: DispatchSourceTimer?

    var enabled: Bool { ProcessInfo.processInfo.environment["NOTIFY_SOCKET"] != nil }

    func send(_ state: String) {
        guard enabled else { return }
        _ = state.withCString { sd_notify(0, $0) }
    }

    func ready(status: String) { send("READY=1\nSTATUS=\(status)") }
    func status(_ text: String) { send("STATUS=\(text)") }
    func stopping() { send("STOPPING=1\nSTATUS=stopping") }

    /// RELOADING=1 with the monotonic time systemd asks for (Type=notify-reload units), then READY=1.
    func reloading() {
        send("RELOADING=1\nMONOTONIC_USEC=\(SystemClock.monotonicMicroseconds)")
    }

    /// Starts pinging at half the watchdog interval, when systemd asked for a watchdog.
    func startWatchdog() {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return }
        let interval = DispatchTimeInterval.microseconds(Int(min(usec / 2, UInt64(Int.max))))
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler { [weak self] in self?.send("WATCHDOG=1") }
        watchdog = timer
        timer.activate()
    }
}
