import Logging
import ReadingStore
import SerialLink
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

/// Routes each control request to its command after the access check, and writes the audit
/// record for commands that show patient data (issue 7 "Access control"):
///
/// 1. unknown command → refused, naming the known ones;
/// 2. the caller's role (AccessPolicy) below the command's `access` → refused with the group
///    needed, logged at notice with uid and command;
/// 3. `showsPatientData` → the command runs, then an audit record (who, when, what, which
///    patients the reply names) is made durable *before* the reply is sent. If that write
///    fails the reply is withheld and the caller gets an error instead: no unaudited access.
struct ControlDispatcher: Sendable {
    typealias AuditWriter = @Sendable (AuditRecord) async throws(StoreError) -> Void

    let commands: [String: ControlCommand]
    let known: String
    let policy: AccessPolicy
    let audit: AuditWriter
    let logger: Logger
    let clock: @Sendable () -> Timestamp

    init(commands: [ControlCommand], policy: AccessPolicy, logger: Logger,
         clock: @escaping @Sendable () -> Timestamp = { realtimeNow() }, audit: @escaping AuditWriter) {
        var table: [String: ControlCommand] = [:]
        for c in commands { table[c.name] = c }
        self.commands = table
        self.known = table.keys.sorted().joined(separator: ", ")
        self.policy = policy
        self.audit = audit
        self.logger = logger
        self.clock = clock
    }

    func handle(_ request: JSONValue, caller: ControlServer.Caller) async -> JSONValue {
        guard let name = request["command"]?.stringValue else {
            return ControlCommand.failure("the request needs a \"command\" string")
        }
        guard let command = commands[name] else {
            let shown = name.count > 40 ? String(name.prefix(40)) + "…" : name
            logger.notice("control request refused", metadata: ["command": "\(shown)", "caller.uid": "\(caller.uid)", "reason": "unknown command"])
            return ControlCommand.failure("unknown command '\(shown)'; this vigild knows \(known)")
        }
        let role = policy.role(of: caller)
        if let refusal = policy.refusal(command: name, access: command.access, role: role) {
            logger.notice("control request refused", metadata: [
                "command": "\(name)", "caller.uid": "\(caller.uid)", "caller.pid": "\(caller.pid)",
                "reason": "permission denied", "needs": "\(command.access == .admin ? policy.adminGroup : policy.memberGroup)",
            ])
            return .object([("ok", false), ("error", .string(refusal)), ("code", "permission_denied")])
        }
        let reply = await command.run(request, caller)
        guard command.showsPatientData else { return reply }

        // Argument names only: their values can be patient IDs or readings.
        let arguments = (request.objectValue ?? []).map(\.0).filter { $0 != "command" }.sorted()
        var patients = Set<String>()
        Self.collectPatients(reply, into: &patients)
        let record = AuditRecord(
            at: clock(), uid: caller.uid, user: AccessPolicy.userName(uid: caller.uid), pid: caller.pid,
            role: role.description, command: name, arguments: arguments,
            patients: patients.sorted().map { PatientID($0) }, succeeded: reply["ok"]?.boolValue == true)
        do {
            try await audit(record)
        } catch {
            logger.error("patient data withheld: the audit record could not be written", metadata: [
                "command": "\(name)", "caller.uid": "\(caller.uid)", "error": "\(error)",
            ])
            return .object([
                ("ok", false), ("code", "audit_failed"),
                ("error", .string("refused: this access could not be recorded in the audit log (\(error.message)); nothing was shown. Check the disk (vigilctl status)")),
            ])
        }
        return reply
    }

    /// Every patient ID a reply names: string values of `patient` keys and string elements of
    /// `patients` arrays, at any depth (bounded by the reply's own size).
    static func collectPatients(_ value: JSONValue, into out: inout Set<String>) {
        switch value {
        case .object(let members):
            for (key, v) in members {
                if key == "patient", let s = v.stringValue { out.insert(s); continue }
                if key == "patients", let list = v.arrayValue {
                    for p in list { if let s = p.stringValue { out.insert(s) } }
                    continue
                }
                collectPatients(v, into: &out)
            }
        case .array(let items):
            for v in items { collectPatients(v, into: &out) }
        default:
            break
        }
    }
}
