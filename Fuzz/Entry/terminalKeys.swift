// libFuzzer entry point for the `terminalKeys` target (scripts/fuzz.sh builds and runs it).
import FuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Fuzz.terminalKeys(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
