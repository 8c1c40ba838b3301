import VitalSigns

/// Who may run a control-socket command (issue 7, access control).
enum ControlAccess: Sendable {
    /// Read-only: members of the `vigil` group (and admins).
    case member
    /// Changes state (pairing, assignment, config): members of `vigil-admin`, or root.
    case admin
}

/// One command vigild answers on the control socket. `request` is the whole JSON request
/// (`{"command": name, …}`); the reply is `{"ok": true, …}` or `{"ok": false, "error": …}`.
struct ControlCommand: Sendable {
    typealias Run = @Sendable (_ request: JSONValue, _ caller: ControlServer.Caller) async -> JSONValue

    var name: String
    var access: ControlAccess
    /// Whether the reply can show patient data (readings, escalations, assignments): such a
    /// call leaves an audit record.
    var showsPatientData: Bool
    var run: Run

    init(_ name: String, access: ControlAccess, showsPatientData: Bool = false, run: @escaping Run) {
        self.name = name
        self.access = access
        self.showsPatientData = showsPatientData
        self.run = run
    }

    static func failure(_ message: String) -> JSONValue { .object([("ok", false), ("error", .string(message))]) }
}
