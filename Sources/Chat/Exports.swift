// The wire shapes and the username rule live in ChatSchema, shared with the server; users
// of the chat domain see them through this module.
@_exported public import ChatSchema
