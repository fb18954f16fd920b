import FuzzDriver
import TernFuzzing

/// libFuzzer target: FuzzTargets.handle (Sources/TernFuzzing/FuzzTargets.swift).
@_cdecl("fuzz_handle_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv) { FuzzTargets.handle($0) }
}
