import SocketIO

/// Logs in to a private-messaging server and says hello to one user.
func sayHello(server: String, as username: String, to userID: String) async throws {
    let manager = try SocketManager(url: server)
    let socket = try await manager.socket(auth: { ["username": .string(username)] })

    await socket.on("private message") { event in
        print("received:", event.arguments)
    }
    let events = await socket.events()  // subscribe first, to see the first .connect
    await socket.connect()
    for await event in events {
        switch event {
        case .connect:
            try await socket.emit("private message", ["content": "hello!", "to": .string(userID)])
            await socket.disconnect()
            return
        case .connectError(let error):
            print("refused:", error.message)
            return
        default:
            continue
        }
    }
}
