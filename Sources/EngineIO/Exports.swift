// The wire format lives in EngineIOProtocol, shared with the server; users of the
// client see it through this module.
@_exported public import EngineIOProtocol
