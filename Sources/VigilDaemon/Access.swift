import Glibc
import Logging

extension VigilConfig {
    /// `control:` — who may use the control socket (docs/configuration.md, docs/operations.md).
    struct Control: Decodable, Sendable {
        /// Members may run read-only commands (`status`, `devices`, `readings`, …). Default `vigil`.
        var memberGroup = "vigil"
        /// Members (and root) may also run commands that change state or show the audit log.
        /// Default `vigil-admin`.
        var adminGroup = "vigil-admin"

        enum CodingKeys: String, CodingKey {
            case memberGroup = "member_group"
            case adminGroup = "admin_group"
        }
        init() {}
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            memberGroup = try c.decodeIfPresent(String.self, forKey: .memberGroup) ?? "vigil"
            adminGroup = try c.decodeIfPresent(String.self, forKey: .adminGroup) ?? "vigil-admin"
            for (key, value) in [(CodingKeys.memberGroup, memberGroup), (.adminGroup, adminGroup)] {
                // shadow-utils' portable group name rule (useradd(8) "CAVEATS"), 32 characters at most.
                let ok = !value.isEmpty && value.utf8.count <= 32 && value.first != "-"
                    && value.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") }
                guard ok else {
                    throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "must be a group name: 1–32 ASCII letters, digits, '-', '_' or '.'")
                }
            }
        }
    }
}

/// What a caller may do on the control socket.
enum CallerRole: Int, Comparable, Sendable, CustomStringConvertible {
    case none = 0, member, admin
    static func < (a: CallerRole, b: CallerRole) -> Bool { a.rawValue < b.rawValue }
    var description: String {
        switch self {
        case .none: "none"
        case .member: "member"
        case .admin: "admin"
        }
    }
}

/// The control socket's access policy (issue 7 "Access control"), resolved once at start-up:
/// root and members of the admin group are admins; members of the member group, and the
/// daemon's own user, are members; everyone else is refused. Membership counts the primary
/// group (SO_PEERCRED) and the supplementary groups (SO_PEERGROUPS) the caller had when it
/// connected, so a group change needs a new login, exactly as for file access.
struct AccessPolicy: Sendable {
    var memberGroup: String
    var adminGroup: String
    /// nil when the group does not exist on this system (then nobody is in it).
    var memberGID: UInt32?
    var adminGID: UInt32?
    /// vigild's own effective user: it owns the database already, so it is a member.
    var serviceUID: UInt32

    static func resolve(_ control: VigilConfig.Control) -> AccessPolicy {
        AccessPolicy(memberGroup: control.memberGroup, adminGroup: control.adminGroup,
                     memberGID: groupID(named: control.memberGroup), adminGID: groupID(named: control.adminGroup),
                     serviceUID: geteuid())
    }

    func role(of caller: ControlServer.Caller) -> CallerRole {
        if caller.uid == 0 { return .admin }
        let groups = [caller.gid] + caller.groups
        if let admin = adminGID, groups.contains(admin) { return .admin }
        if let member = memberGID, groups.contains(member) { return .member }
        if caller.uid == serviceUID { return .member }
        return .none
    }

    /// Why `role` may not run a command needing `access`, or nil when it may.
    func refusal(command: String, access: ControlAccess, role: CallerRole) -> String? {
        switch (access, role) {
        case (_, .admin), (.member, .member): return nil
        case (.admin, _):
            return "permission denied: '\(command)' is for administrators: members of group '\(adminGroup)' or root (sudo vigilctl \(command), or ask to be added: usermod -aG \(adminGroup) <user>)"
        case (.member, .none):
            return "permission denied: '\(command)' needs membership of group '\(memberGroup)' (usermod -aG \(memberGroup) <user>, then log in again)"
        }
    }

    /// Start-up warnings: a configured group that does not exist.
    func logProblems(_ logger: Logger) {
        if memberGID == nil {
            logger.warning("control.member_group does not exist on this system: only root, vigild's own user and the admin group can use vigilctl",
                           metadata: ["group": "\(memberGroup)"])
        }
        if adminGID == nil {
            logger.notice("control.admin_group does not exist on this system: only root can run admin commands",
                          metadata: ["group": "\(adminGroup)"])
        }
    }

    /// The group's ID from the group database (getgrnam_r(3)), or nil when there is none.
    static func groupID(named name: String) -> UInt32? {
        var size = 1024
        while size <= 1 << 20 {
            var group = Glibc.group()
            var result: UnsafeMutablePointer<Glibc.group>?
            var buffer = [CChar](repeating: 0, count: size)
            let rc = getgrnam_r(name, &group, &buffer, size, &result)
            if rc == EINTR { continue }
            if rc == ERANGE { size *= 2; continue }
            guard rc == 0, result != nil else { return nil }
            return group.gr_gid
        }
        return nil
    }

    /// The user's login name (getpwuid_r(3)), or `#<uid>` when it has none.
    static func userName(uid: UInt32) -> String {
        var size = 1024
        while size <= 1 << 20 {
            var pw = passwd()
            var result: UnsafeMutablePointer<passwd>?
            var buffer = [CChar](repeating: 0, count: size)
            let rc = getpwuid_r(uid, &pw, &buffer, size, &result)
            if rc == EINTR { continue }
            if rc == ERANGE { size *= 2; continue }
            guard rc == 0, result != nil, let name = pw.pw_name else { break }
            return String(cString: name)
        }
        return "#\(uid)"
    }
}
