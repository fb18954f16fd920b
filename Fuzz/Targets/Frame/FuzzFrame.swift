import FuzzDriver
import TernFuzzing

/// libFuzzer target: FuzzTargets.frame (Sources/TernFuzzing/FuzzTargets.swift).
@_cdecl("fuzz_frame_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv) { FuzzTargets.frame($0) }
}
