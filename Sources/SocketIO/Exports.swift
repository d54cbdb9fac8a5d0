// The packet format lives in SocketIOProtocol, shared with the server; users of the
// client see it through this module.
@_exported public import SocketIOProtocol
